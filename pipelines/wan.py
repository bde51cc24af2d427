"""Wan 2.1 text-to-video with a diffaccel strategy: `python pipelines/wan.py --help` (GPU), `--tiny` (CPU, no hub).

The logic lives in diffaccel.generate; this script only picks the model. See pipelines/README.md.
"""

from diffaccel.generate import main

if __name__ == "__main__":
    raise SystemExit(main(model="wan"))
