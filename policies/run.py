"""Plan one batch with a policy and a strategy, print the actions and diffaccel.summary:
`python policies/run.py --model dp-reach --strategy taylorseer:interval=5`. See policies/README.md.
"""

from diffaccel.policy.cli import run_main

if __name__ == "__main__":
    raise SystemExit(run_main())
