"""dLLM entry points on the shared engine: ``wrap`` / ``unwrap`` / ``summary`` are diffaccel's own.

``diffaccel.dllm.wrap(pipe, "dkv-cache", refresh_interval=4)`` is ``diffaccel.wrap`` (the engine
attaches its hook, step clock and statistics, then the strategy's own hooks, see
:mod:`diffaccel.dllm.strategies`); this module only makes sure the dLLM strategies are registered
and also accepts CLI-style specs (``"dkv-cache:refresh_interval=4"``).
"""

from __future__ import annotations

from ..api import summary, unwrap
from ..api import wrap as _core_wrap
from ..core.errors import UnknownStrategyError
from ..strategies.base import StrategyConfig
from ..strategies.registry import get_entry, parse_strategy_spec
from . import strategies  # noqa: F401  (importing it registers the dLLM strategies with the engine)
from .dkv_cache import DKVCacheConfig
from .fast_dllm import FastDLLMConfig
from .sparsed import SparseDConfig
from .ssd import SSDConfig

DLLM_STRATEGIES: dict[str, type[StrategyConfig]] = {
    "dkv-cache": DKVCacheConfig,
    "sparsed": SparseDConfig,
    "ssd": SSDConfig,
    "fast-dllm": FastDLLMConfig,
}


def dllm_strategies() -> list[str]:
    return sorted(DLLM_STRATEGIES)


def resolve(strategy: str | StrategyConfig, options: dict | None = None) -> StrategyConfig:
    """A validated dLLM config from a name, a ``name:key=value`` spec, or a config object."""
    options = dict(options or {})
    if isinstance(strategy, StrategyConfig):
        config = strategy
    elif isinstance(strategy, str):
        name, spec_options = parse_strategy_spec(strategy)
        get_entry(name)  # unknown names: the engine's error, listing every strategy
        if name not in DLLM_STRATEGIES:
            raise UnknownStrategyError(f"'{name}' is not a diffusion-LM strategy; dLLM strategies: "
                                       f"{', '.join(dllm_strategies())}")
        config = DLLM_STRATEGIES[name]()
        options = {**spec_options, **options}
    else:
        raise TypeError(f"a strategy is a name or a config object, got {type(strategy).__name__}")
    if config.strategy_name not in DLLM_STRATEGIES:
        raise UnknownStrategyError(f"'{config.strategy_name}' is not a diffusion-LM strategy")
    if options:
        return config.replace(**options)
    config.validate()
    return config


def wrap(pipe, strategy: str | StrategyConfig, **options):
    """``diffaccel.wrap`` for dLLM pipelines, also accepting ``"name:key=value"`` specs."""
    return _core_wrap(pipe, resolve(strategy, options))


__all__ = ["dllm_strategies", "resolve", "summary", "unwrap", "wrap"]
