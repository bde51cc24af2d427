"""Tuned presets [ours]: `taylorseer:preset=psnr35` and `taylorseer:preset=psnr30`.

Each is what `diffaccel.tune` chose for a PSNR target (35 or 30 dB against the full-step run) on a zoo
model, per adapter family, written as the options it adds to the family's own TaylorSeer preset (so
`wrap(pipe, "taylorseer", preset="psnr35")` runs exactly the spec tune returned). Families nobody tuned
for get the `"*"` entry (on top of their own family preset). Schedules are explicit step lists written for
`schedule_steps` steps; a run with another step count takes them over by position on the noise schedule.

Where each entry came from (50 steps, each model's default guidance as two calls per step; tune
calibrated on seeds 100-101 and validated on seeds 102-103, with its 0.5 dB margin):

    diffaccel compare --model flux-photos --steps 50 --seeds 0-1 --no-lpips --threads 1 \\
        --strategies none --tune psnr=35 --tune psnr=30
    diffaccel compare --model wan-clips --steps 50 --seeds 0-1 --no-lpips --threads 1 \\
        --strategies none --tune psnr=35 --tune psnr=30

The measured figures (validation and unseen seeds) are in docs/compare/schedules.md.
"""

from __future__ import annotations

from typing import Any

#: strategy -> tuned preset name -> adapter family ("*": any other family) -> options on top of the family
#: preset. The FLUX family's warm-up is 3 steps, Wan's 1 (their official TaylorSeer presets), which the
#: growing schedules start from. "*" takes, per target, the choice with more full steps of the two.
TUNED_PRESETS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "taylorseer": {
        "psnr35": {
            "flux": {"granularity": "stack", "order": 2, "schedule": "growing-4"},
            "wan": {"granularity": "stack", "order": 2, "schedule": "growing-3"},
            "*": {"granularity": "stack", "order": 2, "schedule": "growing-3"},
        },
        "psnr30": {
            "flux": {"granularity": "stack", "order": 2, "schedule": "growing-6", "guidance_reuse": True},
            "wan": {"granularity": "stack", "order": 2, "schedule": "growing-5", "guidance_reuse": True},
            "*": {"granularity": "stack", "order": 2, "schedule": "growing-5", "guidance_reuse": True},
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
