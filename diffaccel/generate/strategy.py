"""`--strategy` for the generation scripts: parse, validate before any model loads, attach with `diffaccel.wrap`.

One `--strategy name[:key=value,...]` is one strategy with its model family's preset and the given options
overriding it (exactly `diffaccel.wrap(pipe, name, **options)`). Repeating `--strategy` (or joining requests with
`+`) composes strategies in one wrap (`diffaccel.wrap(pipe, [a, b])`); each keeps its own family preset, with its
own options on top. `none` is the baseline: the pipeline is not wrapped at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.errors import UnknownStrategyError
from ..strategies.registry import StrategyRequest, format_requests, parse_requests, strategies

BASELINE = "none"

__all__ = ["BASELINE", "StrategyRequest", "apply_strategies", "parse_strategies", "pipeline_strategies", "strategy_tag"]


def parse_strategies(specs: Sequence[str] | None) -> list[StrategyRequest]:
    """Parse and validate `--strategy` values; ``[]`` means the baseline. Unknown names and options are
    errors here, before a model is loaded; so are diffusion-LM strategies, which need a LLaDA / Dream pipeline
    (found here rather than by ``wrap`` after a checkpoint of many gigabytes has been read)."""
    requests = [request for spec in specs or [BASELINE] for request in parse_requests(spec)]
    baseline = [r for r in requests if r.name.lower() == BASELINE]
    for request in baseline:
        if request.options:
            raise UnknownStrategyError(f"'{BASELINE}' (the baseline) takes no options, got '{request.text}'")
    if baseline and len(requests) > 1:
        raise UnknownStrategyError(
            f"'{BASELINE}' is the unaccelerated baseline and cannot be composed with other strategies"
        )
    if baseline:
        return []
    return [request.validate(domain="denoiser") for request in requests]


def pipeline_strategies() -> list[str]:
    """Registered strategies that apply to diffusers image / video pipelines."""
    return strategies(domain="denoiser")


def strategy_tag(requests: Sequence[StrategyRequest]) -> str:
    """Short text naming the run, for file names and the report."""
    return format_requests(requests) if requests else BASELINE


def apply_strategies(pipe, requests: Sequence[StrategyRequest]):
    """Wrap ``pipe`` (nothing for the baseline) exactly as ``diffaccel.wrap`` does. Returns the pipe."""
    from ..api import wrap

    if not requests:
        return pipe
    return wrap(pipe, list(requests))
