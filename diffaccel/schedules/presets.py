"""Tuned presets [ours]: `taylorseer:preset=psnr35` and `taylorseer:preset=psnr30`.

Each is what `diffaccel.tune` chose for a PSNR target (35 or 30 dB against the full-step run) on a zoo
model, per adapter family, written as the options it adds to the family's own TaylorSeer preset (so
`wrap(pipe, "taylorseer", preset="psnr35")` runs exactly the spec tune returned). Families nobody tuned
for get the `"*"` entry (on top of their own family preset). Schedules are explicit step lists written for
`schedule_steps` steps; a run with another step count takes them over by position on the noise schedule.

Where each entry came from (50 steps, each model's default guidance as two calls per step; tune
calibrated on seeds 100-101 and validated on seeds 102-103 with its 0.5 dB margin; records in
docs/compare/runs/<model>-50-tune-presets/):

    diffaccel compare --model flux-photos --steps 50 --seeds 0-1 --no-lpips --threads 1 \
        --strategies none --tune psnr=35 --tune psnr=30
    diffaccel compare --model wan-clips --steps 50 --seeds 0-1 --no-lpips --threads 1 \
        --strategies none --tune psnr=35 --tune psnr=30

On seeds 0-1, never used by the search: flux-photos psnr35 37.05 dB at 4.36x CPU time, psnr30 34.78 dB at
4.93x; wan-clips psnr35 34.64 dB at 4.95x, psnr30 30.74 dB at 6.12x (docs/compare/schedules.md). Carried to
20 steps (the default `diffaccel compare`), flux-photos psnr35 computes 8 of 20 steps: 40.34 dB at 2.48x.
"""

from __future__ import annotations

from typing import Any

#: the step count the presets were tuned at; their schedules are written as step lists for it, so a run
#: with another step count takes them over by position on the noise schedule
TUNED_STEPS = 50


def _at(steps: str, **options) -> dict[str, Any]:
    return {"granularity": "stack", "order": 2, "schedule": steps, "schedule_steps": TUNED_STEPS, **options}


#: strategy -> tuned preset name -> adapter family ("*": any other family) -> options on top of the family
#: preset. Each schedule is the growing-gap schedule tune chose, written out at 50 steps (FLUX family:
#: warm-up 3, Wan: warm-up 1, their official TaylorSeer presets), identical to it at 50 steps. "*" takes,
#: per target, the choice with more full steps (growing-3 and growing-5 with warm-up 3).
TUNED_PRESETS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "taylorseer": {
        "psnr35": {
            "flux": _at("0|1|2|7|13|20|28|37|47", guidance_reuse=True),  # growing-5
            "wan": _at("0|3|7|12|18|25|33|42"),  # growing-3
            "*": _at("0|1|2|5|9|14|20|27|35|44"),  # growing-3
        },
        "psnr30": {
            "flux": _at("0|1|2|8|15|23|32|42", guidance_reuse=True),  # growing-6
            "wan": _at("0|5|11|18|26|35|45", guidance_reuse=True),  # growing-5
            "*": _at("0|1|2|7|13|20|28|37|47", guidance_reuse=True),  # growing-5
        },
    },
}


def preset_names(strategy: str) -> list[str]:
    return sorted(TUNED_PRESETS.get(strategy, {}))


def check_preset(strategy: str, name: str) -> None:
    """A clear error for a preset that does not exist (naming the ones that do)."""
    if not isinstance(name, str) or name not in TUNED_PRESETS.get(strategy, {}):
        available = preset_names(strategy)
        raise ValueError(
            f"{strategy} has no tuned preset {name!r}; "
            + (f"choose one of {available}" if available else "tuned presets exist for: " + ", ".join(TUNED_PRESETS))
        )


def tuned_preset(strategy: str, name: str, family: str, has_stack: bool = True) -> dict[str, Any]:
    """The options preset `name` sets for `family` (the family's own entry, else the `"*"` entry). A family
    without a block stack (UNets, Latte) forecasts the official units instead of the stack."""
    check_preset(strategy, name)
    table = TUNED_PRESETS[strategy][name]
    options = dict(table.get(family, table["*"]))
    if not has_stack and options.get("granularity") == "stack":
        options["granularity"] = "modules"
    return options
