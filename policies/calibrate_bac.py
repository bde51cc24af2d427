"""Calibrate BAC once and save its schedule: `python policies/calibrate_bac.py --model dp-reach --out dp-bac.json`,
then `python policies/evaluate.py --strategy bac --schedule dp-bac.json`. See policies/README.md.
"""

from diffaccel.policy.cli import calibrate_main

if __name__ == "__main__":
    raise SystemExit(calibrate_main())
