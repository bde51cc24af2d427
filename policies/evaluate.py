"""Evaluate a policy with any strategy: `python policies/evaluate.py --model dp-reach --strategy bac --episodes 200`.

The logic lives in diffaccel.policy.cli; see policies/README.md.
"""

from diffaccel.policy.cli import evaluate_main

if __name__ == "__main__":
    raise SystemExit(evaluate_main())
