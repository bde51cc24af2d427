"""`--strategy` for the generation scripts: parse, validate before any model loads, attach with `diffaccel.wrap`.

One `--strategy name[:key=value,...]` is one strategy with its model family's preset and the given options
overriding it (exactly `diffaccel.wrap(pipe, name, **options)`). Repeating `--strategy` composes strategies in
one wrap (`diffaccel.wrap(pipe, [a, b])`); each keeps its own family preset, with its own options on top.
`none` is the baseline: the pipeline is not wrapped at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from torch import nn

from ..core.errors import UnknownStrategyError
from ..strategies.registry import get_entry, parse_strategy_spec, resolve_config, strategies

BASELINE = "none"
#: pipeline components that are denoisers (as in `diffaccel.wrap`)
_DENOISERS = ("transformer", "transformer_2", "unet", "prior")


@dataclass(frozen=True)
class StrategyRequest:
    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in self.options.items()) if self.options else "")


def parse_strategies(specs: Sequence[str] | None) -> list[StrategyRequest]:
    """Parse and validate `--strategy` values; ``[]`` means the baseline. Unknown names and options are
    errors here, before a model is loaded."""
    requests = []
    for spec in specs or [BASELINE]:
        name, options = parse_strategy_spec(spec)
        if name.lower() == BASELINE:
            if options:
                raise UnknownStrategyError(f"'{BASELINE}' (the baseline) takes no options, got '{spec}'")
            requests.append(StrategyRequest(BASELINE))
            continue
        entry = get_entry(name)  # an unknown name: an error listing the registered strategies
        if _is_language_model_strategy(entry):
            raise UnknownStrategyError(
                f"'{name}' is a diffusion-language-model strategy (it replaces a dLLM decoding loop); for image and "
                f"video pipelines use one of: {', '.join(pipeline_strategies())}"
            )
        try:
            entry.config_cls().replace(**options)  # unknown options: an error listing the strategy's options
        except (TypeError, ValueError) as error:
            if isinstance(error, UnknownStrategyError):
                raise
            raise UnknownStrategyError(f"bad option value in '{spec}': {error}") from error
        requests.append(StrategyRequest(name, options))
    if len(requests) > 1 and any(r.name == BASELINE for r in requests):
        raise UnknownStrategyError(f"'{BASELINE}' is the unaccelerated baseline and cannot be composed with "
                                   "other strategies")
    if any(r.name == BASELINE for r in requests):
        return []
    return requests


def _is_language_model_strategy(entry) -> bool:
    """diffaccel's dLLM strategies (``diffaccel.dllm``) need a LLaDA / Dream pipeline; found here, before any
    model loads, rather than by ``wrap`` after a checkpoint of many gigabytes has been read."""
    return entry.strategy_cls.__module__.startswith("diffaccel.dllm")


def pipeline_strategies() -> list[str]:
    """Registered strategies that apply to diffusers image / video pipelines."""
    return [name for name in strategies() if not _is_language_model_strategy(get_entry(name))]


def strategy_tag(requests: Sequence[StrategyRequest]) -> str:
    """Short text naming the run, for file names and the report."""
    return "+".join(r.text for r in requests) if requests else BASELINE


def apply_strategies(pipe, requests: Sequence[StrategyRequest]):
    """Wrap ``pipe`` (nothing for the baseline). Returns the pipe."""
    import diffaccel

    if not requests:
        return pipe
    if len(requests) == 1:
        return diffaccel.wrap(pipe, requests[0].name, **requests[0].options)
    # a composition takes config objects; the family preset comes first, the user's options on top of it
    adapter = _denoiser_adapter(pipe)
    specs = [r.name if not r.options else resolve_config(r.name, adapter.preset(r.name), r.options)
             for r in requests]
    return diffaccel.wrap(pipe, specs)


def _denoiser_adapter(pipe):
    from ..adapters.registry import find_adapter, generic_adapter

    components = getattr(pipe, "components", {}) or {}
    for name in _DENOISERS:
        module = components.get(name)
        if isinstance(module, nn.Module):
            return find_adapter(module) or generic_adapter(module)
    raise UnknownStrategyError(f"{type(pipe).__name__} has no denoiser component ({', '.join(_DENOISERS)})")
