"""`diffaccel compare --tune psnr=35`: run `diffaccel.tune` on the comparison's model and add its choice as
a row.

Tune calibrates on seeds 100-101 and validates on seeds 102-103 (`TUNE_CALIBRATION_SEEDS`,
`TUNE_VALIDATION_SEEDS`), seeds the comparison never scores, so the tuned row's PSNR in the table is
measured on seeds the search never saw. This is how the shipped tuned presets (`taylorseer:preset=psnr35`,
`diffaccel.schedules.presets`) were chosen."""

from __future__ import annotations

import logging
from pathlib import Path

from .specs import StrategySpec, parse_spec
from .store import atomic_write_text

logger = logging.getLogger(__name__)

TUNE_CALIBRATION_SEEDS = (100, 101)
TUNE_VALIDATION_SEEDS = (102, 103)


def tuned_specs(model, steps: int, settings, out_dir: Path) -> list[StrategySpec]:
    from ..tune import tune_targets
    from .quality import output_array

    overlap = sorted(set(settings.seeds) & set(TUNE_CALIBRATION_SEEDS + TUNE_VALIDATION_SEEDS))
    if overlap:
        raise ValueError(
            f"--tune chooses on seeds {list(TUNE_CALIBRATION_SEEDS + TUNE_VALIDATION_SEEDS)}; the comparison's "
            f"--seeds must not include them (got {overlap}), so that its rows are scored on unseen seeds"
        )
    condition = model.conditions[0]

    def generate(seed: int):
        return output_array(model.pipe(**model.call_kwargs(condition, steps, seed, settings.guidance_scale)))

    specs = []
    results = tune_targets(
        model.pipe,
        settings.tune,
        generate=generate,
        num_inference_steps=steps,
        calibration_seeds=TUNE_CALIBRATION_SEEDS,
        validation_seeds=TUNE_VALIDATION_SEEDS,
        guidance_scale=settings.guidance_scale,
        progress=settings.progress,
    )
    for target, result in zip(settings.tune, results):
        atomic_write_text(out_dir / f"tune-psnr{target:g}.md", str(result) + "\n")
        if result.ok:
            specs.append(parse_spec(result.spec))
        else:
            logger.warning("--tune psnr=%g: %s", target, result.message)
    return specs
