"""HyCa profiling: `diffaccel.hyca.profile(...)` runs one generation with every step computed and
returns the per-channel solver assignment, to save and pass to `wrap(obj, "hyca", profile=...)`.

    profile = diffaccel.hyca.profile(pipe, prompt="a cat", num_inference_steps=50)
    profile.save("flux-hyca.safetensors")
    pipe = diffaccel.wrap(pipe, "hyca", profile="flux-hyca.safetensors")
"""

from __future__ import annotations

from typing import Any, Callable

from .api import engines, unwrap, wrap
from .core.ranks import from_rank_zero
from .strategies.hyca import HyCa
from .strategies.hyca_profile import HycaProfile, LeafAssignment

__all__ = ["HycaProfile", "LeafAssignment", "profile"]


def profile(obj, run: Callable[[], Any] | None = None, *, options: dict | None = None, **call_kwargs) -> HycaProfile:
    """Profile `obj` (a pipeline or a wrapped-able model) on one generation.

    Args:
        obj: what you will later wrap with HyCa; must not be wrapped now.
        run: a callable that performs one generation (for bare models in hand-written loops);
            by default `obj(**call_kwargs)` is called.
        options: HyCa options (interval, warmup, num_clusters, solvers, probe_steps, seed); the
            model family's preset fills the rest.
    """
    wrap(obj, "hyca", **(options or {}))
    try:
        obj(**call_kwargs) if run is None else run()
        strategies = [s for e in engines(obj).values() for s in e.strategies if isinstance(s, HyCa)]
        profiles = [from_rank_zero(s.finish_probe()) for s in strategies]  # one profile on every rank
    finally:
        unwrap(obj)
    if len(profiles) != 1:
        raise NotImplementedError("profiling a pipeline with several wrapped denoisers: profile each model alone")
    return profiles[0]
