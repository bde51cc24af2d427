"""cache-dit as comparison rows: `cache-dit:dbcache[:options]` and `cache-dit:taylorseer[:options]`.

Run through cache-dit's own entry points (`cache_dit.enable_cache(pipe, cache_config=DBCacheConfig(...),
calibrator_config=TaylorSeerCalibratorConfig(...))`, `cache_dit.disable_cache(pipe)`). cache-dit is an
optional extra (`pip install 'diffaccel[cache-dit]'`); without it the rows say how to install it. It is a
pure-Python wheel whose requirements diffaccel already has, so it never changes the installed torch.

Options are fields of `DBCacheConfig` (e.g. `Fn_compute_blocks`, `Bn_compute_blocks`,
`residual_diff_threshold`, `max_warmup_steps`) and, for `taylorseer`, of `TaylorSeerCalibratorConfig`
(`taylorseer_order`). The harness fills `num_inference_steps` (the run's steps) and, unless given,
`enable_separate_cfg` from the baseline run: cache-dit tells the guidance branches apart by the parity of
the transformer call counter, so it must know whether the pipeline makes two calls per step.

Caveats. cache-dit (vipshop/cache-dit) patches the pipeline *class*'s `__call__`; `disable_cache`
removes that again. Its patch functors, however, stay: for FLUX, `FluxPatchFunctor` replaces
`transformer.forward` and every single block's `forward` and marks the transformer `_is_patched`, and
`disable_cache` (cache-dit 1.5.3) does not restore them. Outputs stay bit-identical, but hooks attached
afterwards see a different call structure (diffusers' MagCache then never completes a run). The harness
therefore runs cache-dit rows after every other row (`harness.RUN_ORDER`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ...core.errors import UnknownStrategyError
from ..peer_table import register_peer
from ..runners import HarnessContext, RunStats, StrategyRunner, Unsupported
from ..specs import StrategySpec, make_spec

COUNTED = "counted"
TECHNIQUES = {
    "dbcache": "DBCache (dual block cache: first Fn blocks decide, middle blocks reused from the last full step)",
    "taylorseer": "DBCache with cache-dit's TaylorSeer calibrator (forecast instead of reuse)",
}
INSTALL_HINT = "cache-dit is not installed (optional extra): pip install 'diffaccel[cache-dit]'"
# DBCacheConfig's fields (cache-dit 1.5), used to validate options when cache-dit is not importable.
_DB_FIELDS_FALLBACK = {
    "cache_type",
    "Fn_compute_blocks",
    "Bn_compute_blocks",
    "residual_diff_threshold",
    "max_accumulated_residual_diff_threshold",
    "max_warmup_steps",
    "warmup_interval",
    "max_cached_steps",
    "max_continuous_cached_steps",
    "enable_separate_cfg",
    "cfg_compute_first",
    "cfg_diff_compute_separate",
    "num_inference_steps",
    "steps_computation_mask",
    "steps_computation_policy",
    "force_refresh_step_hint",
    "force_refresh_step_policy",
}
_CALIBRATOR_FIELDS_FALLBACK = {"enable_calibrator", "enable_encoder_calibrator", "calibrator_type", "taylorseer_order"}


def names() -> list[str]:
    return list(TECHNIQUES)


def describe() -> list[tuple[str, str]]:
    return list(TECHNIQUES.items())


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("cache_dit") is not None


def _import_cache_dit():
    """Import cache-dit with its logging (every enable/disable, pattern checks, on stdout) lowered to errors,
    unless the user chose a level with CACHE_DIT_LOG_LEVEL. Only effective when cache-dit is first imported."""
    os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "error")
    import cache_dit

    return cache_dit


def _fields() -> tuple[set[str], set[str]]:
    try:
        cache_dit = _import_cache_dit()

        db = {f.name for f in dataclasses.fields(cache_dit.DBCacheConfig)}
        calibrator = {f.name for f in dataclasses.fields(cache_dit.TaylorSeerCalibratorConfig)}
        return db, calibrator
    except ImportError:
        return _DB_FIELDS_FALLBACK, _CALIBRATOR_FIELDS_FALLBACK


def validate(spec: StrategySpec) -> StrategySpec:
    if spec.name not in TECHNIQUES:
        raise UnknownStrategyError(
            f"unknown cache-dit technique '{spec.name}'; available: {', '.join('cache-dit:' + n for n in TECHNIQUES)}"
        )
    db, calibrator = _fields()
    allowed = db | (calibrator if spec.name == "taylorseer" else set())
    for key in spec.options_dict:
        if key not in allowed:
            raise UnknownStrategyError(
                f"unknown option '{key}' for cache-dit:{spec.name}; its options are {sorted(allowed)}"
            )
    return make_spec("cache-dit", spec.name, spec.options_dict)


class Runner(StrategyRunner):
    needs_counting = True

    def __init__(self, spec: StrategySpec):
        super().__init__(spec)
        self.enabled = False

    def setup(self, ctx: HarnessContext) -> None:
        super().setup(ctx)
        if not available():
            raise Unsupported(INSTALL_HINT)
        cache_dit = _import_cache_dit()

        pipe = ctx.model.pipe
        if not cache_dit.BlockAdapterRegister.is_supported(pipe):
            raise Unsupported(
                f"cache-dit has no block adapter for {type(pipe).__name__} (it matches pipeline class "
                "name prefixes; see cache_dit.supported_pipelines())"
            )
        db_fields, calibrator_fields = _fields()
        options = self.spec.options_dict
        db_options = {k: v for k, v in options.items() if k in db_fields}
        db_options["num_inference_steps"] = ctx.steps
        calls = ctx.baseline_calls_per_step()
        if "enable_separate_cfg" not in db_options and calls is not None:
            db_options["enable_separate_cfg"] = calls > 1
        calibrator = None
        if self.spec.name == "taylorseer":
            calibrator = cache_dit.TaylorSeerCalibratorConfig(
                **{k: v for k, v in options.items() if k in calibrator_fields}
            )
        try:
            cache_dit.enable_cache(
                pipe, cache_config=cache_dit.DBCacheConfig(**db_options), calibrator_config=calibrator
            )
            self.enabled = True
        except Exception as error:  # noqa: BLE001 - cache-dit's own refusal becomes the row's reason
            self.teardown()
            raise Unsupported(f"cache_dit.enable_cache: {type(error).__name__}: {error}") from error

    def after_call(self) -> RunStats:
        extra: dict[str, Any] = {}
        try:
            cache_dit = _import_cache_dit()
            stats = cache_dit.summary(self.ctx.model.pipe, logging=False)
            extra["cache_dit_cached_steps"] = sorted({s for st in stats for s in (st.cached_steps or [])})
            extra["cache_dit_cfg_cached_steps"] = sorted({s for st in stats for s in (st.cfg_cached_steps or [])})
        except Exception:  # noqa: BLE001 - statistics are informative only
            pass
        return RunStats(self.ctx.steps, None, None, COUNTED, extra)

    def teardown(self) -> None:
        if self.enabled:
            _import_cache_dit().disable_cache(self.ctx.model.pipe)
            self.enabled = False


register_peer("cache-dit", validate=validate, make_runner=Runner, names=names, describe=describe)
