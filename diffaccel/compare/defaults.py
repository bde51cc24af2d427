"""What `diffaccel compare` runs when `--strategies` is not given.

The baseline, every registered diffaccel strategy (TaylorSeer at intervals 2, 3 and 4; the others at
their family preset), diffusers' five cache hooks at their own defaults, and cache-dit's two rows (shown
with the install hint when the optional extra is missing). cache-dit's default `Fn_compute_blocks=8` is
larger than a zoo model's block count (cache-dit asserts), so its rows use the F1B0 layout (first block
decides, nothing recomputed at the end) that cache-dit's docs recommend with a calibrator; every other
cache-dit option keeps its default.
"""

from __future__ import annotations

from .specs import BASELINE, StrategySpec, make_spec

#: settings swept per diffaccel strategy; strategies not listed run once at their preset
DIFFACCEL_SWEEPS: dict[str, list[dict]] = {
    "taylorseer": [{"interval": 2}, {"interval": 3}, {"interval": 4}],
}
DIFFUSERS_PEERS = ("taylorseer", "fbc", "magcache", "pab", "fastercache")
CACHE_DIT_DEFAULT_OPTIONS = {"Fn_compute_blocks": 1, "Bn_compute_blocks": 0}
CACHE_DIT_PEERS = ("dbcache", "taylorseer")


def image_strategies() -> list[str]:
    """Registered strategies for image/video denoisers (diffusion-LM and policy strategies share the registry;
    they are compared by their own paths)."""
    from ..strategies.registry import strategies

    return strategies(domain="denoiser")


def default_specs(include_peers: bool = True) -> list[StrategySpec]:
    specs = [BASELINE]
    for name in image_strategies():
        for options in DIFFACCEL_SWEEPS.get(name, [{}]):
            specs.append(make_spec("diffaccel", name, options))
    if include_peers:
        specs += [make_spec("diffusers", name) for name in DIFFUSERS_PEERS]
        specs += [make_spec("cache-dit", name, CACHE_DIT_DEFAULT_OPTIONS) for name in CACHE_DIT_PEERS]
    return specs
