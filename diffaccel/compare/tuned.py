"""`diffaccel compare --tune psnr=35`: run `diffaccel.tune` on the comparison's model and add its choice as
a row. Candidates are chosen on the held-out warm-up seed and validated on the comparison's seeds, so the
row's PSNR in the table is measured on seeds the choice was validated on but never calibrated on."""

from __future__ import annotations

import logging
from pathlib import Path

from .specs import StrategySpec, parse_spec
from .store import atomic_write_text

logger = logging.getLogger(__name__)


def tuned_specs(model, steps: int, settings, out_dir: Path) -> list[StrategySpec]:
    from ..tune import tune_targets
    from .quality import output_array

    condition = model.conditions[0]

    def generate(seed: int):
        return output_array(model.pipe(**model.call_kwargs(condition, steps, seed, settings.guidance_scale)))

    specs = []
    results = tune_targets(
        model.pipe,
        settings.tune,
        generate=generate,
        num_inference_steps=steps,
        calibration_seeds=(settings.warmup_seed,),
        validation_seeds=tuple(settings.seeds),
        guidance_scale=settings.guidance_scale,
        save_dir=out_dir / "schedules",
        progress=settings.progress,
    )
    for target, result in zip(settings.tune, results):
        atomic_write_text(out_dir / f"tune-psnr{target:g}.md", str(result) + "\n")
        if result.ok:
            specs.append(parse_spec(result.spec))
        else:
            logger.warning("--tune psnr=%g: %s", target, result.message)
    return specs
