"""What `diffaccel compare` runs when `--strategies` is not given.

The baseline; every registered diffaccel strategy at its family preset, and TaylorSeer's tuned presets at
35 and 30 dB (`taylorseer:preset=psnr35`, `preset=psnr30`: what `diffaccel.tune` chose, see
`diffaccel.schedules.presets`); then the peers. On a zoo model and step count whose peers were swept
(`compare.peer_settings`), each peer appears at its own fastest setting meeting each target; elsewhere
diffusers' cache hooks run at their own defaults. PAB and FasterCache stay at their defaults (unsupported
on two-call guidance, with the reason shown), and cache-dit's two rows follow (with the install hint when
the optional extra is missing). cache-dit's default `Fn_compute_blocks=8` is larger than a zoo model's
block count (cache-dit asserts), so its rows use the F1B0 layout (first block decides, nothing recomputed
at the end) that cache-dit's docs recommend with a calibrator; every other cache-dit option keeps its
default.
"""

from __future__ import annotations

from .peer_settings import best_peer_specs
from .specs import BASELINE, StrategySpec, make_spec, parse_spec

#: settings run per diffaccel strategy; strategies not listed run once at their preset
DIFFACCEL_SWEEPS: dict[str, list[dict]] = {
    "taylorseer": [{}, {"preset": "psnr35"}, {"preset": "psnr30"}],
}
DIFFUSERS_PEERS = ("taylorseer", "fbc", "magcache", "pab", "fastercache")
CACHE_DIT_DEFAULT_OPTIONS = {"Fn_compute_blocks": 1, "Bn_compute_blocks": 0}
CACHE_DIT_PEERS = ("dbcache", "taylorseer")


def image_strategies() -> list[str]:
    """Registered strategies for image/video denoisers (diffusion-LM and policy strategies share the registry;
    they are compared by their own paths)."""
    from ..strategies.registry import strategies

    return strategies(domain="denoiser")


def default_specs(include_peers: bool = True, model: str | None = None, steps: int | None = None) -> list[StrategySpec]:
    specs = [BASELINE]
    for name in image_strategies():
        for options in DIFFACCEL_SWEEPS.get(name, [{}]):
            specs.append(make_spec("diffaccel", name, options))
    if include_peers:
        specs += _peer_specs(model, steps)
    return specs


def _peer_specs(model: str | None, steps: int | None) -> list[StrategySpec]:
    best = best_peer_specs(model, steps) if model is not None and steps is not None else None
    if best is None:
        peers = [make_spec("diffusers", name) for name in DIFFUSERS_PEERS]
    else:
        peers = [parse_spec(text) for text in best]
        swept = {spec.name for spec in peers}
        peers += [make_spec("diffusers", name) for name in ("pab", "fastercache") if name not in swept]
    peers += [make_spec("cache-dit", name, CACHE_DIT_DEFAULT_OPTIONS) for name in CACHE_DIT_PEERS]
    return peers
