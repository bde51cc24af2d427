"""FLUX.1-dev text-to-image with a diffaccel strategy: `python pipelines/flux.py --help` (GPU), `--tiny` (CPU, no hub).

The logic lives in diffaccel.generate; this script only picks the model. See pipelines/README.md.
"""

from diffaccel.generate import main

if __name__ == "__main__":
    raise SystemExit(main(model="flux"))
