"""Train a policy zoo model: `python policies/train.py dp-reach [--steps N] [--out DIR]` (the zoo's training loop,
one thread by default; writes model.safetensors, config.json and manifest.json). See policies/README.md.
"""

from diffaccel.policy.cli import train_main

if __name__ == "__main__":
    raise SystemExit(train_main())
