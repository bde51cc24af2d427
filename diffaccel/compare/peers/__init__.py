"""Peers in the comparison, each run through its own code: diffusers' built-in cache hooks
(`diffusers:<technique>`) and cache-dit (`cache-dit:<dbcache|taylorseer>`, an optional extra).

Peers are timed and scored exactly like diffaccel's strategies; since they report no statistics the
harness counts their work (see `diffaccel.compare.counting`). A peer that cannot run on a model becomes a
table row with the reason, never a crash.
"""

from __future__ import annotations

from ..runners import StrategyRunner
from ..specs import StrategySpec
from . import cache_dit, diffusers_hooks

FAMILIES = {"diffusers": diffusers_hooks, "cache-dit": cache_dit}


def validate_peer_spec(spec: StrategySpec) -> StrategySpec:
    """Check the technique name and option names (without importing the peer library's heavy parts);
    returns the spec with the technique's canonical name."""
    return FAMILIES[spec.family].validate(spec)


def make_peer_runner(spec: StrategySpec) -> StrategyRunner:
    return FAMILIES[spec.family].Runner(spec)


def peer_names() -> list[str]:
    """Every peer spec name, e.g. `diffusers:fbc`."""
    return [f"{family}:{name}" for family, module in FAMILIES.items() for name in module.names()]


def describe_peers() -> list[tuple[str, str]]:
    return [(f"{family}:{name}", text) for family, module in FAMILIES.items() for name, text in module.describe()]
