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
from ..strategies.registry import StrategyRequest, get_entry, strategies
from . import strategies as _registered  # noqa: F401  (importing it registers the dLLM strategies)


def dllm_strategies() -> list[str]:
    return strategies(domain="dllm")


#: name -> config class of every diffusion-LM strategy (read from the registry)
DLLM_STRATEGIES: dict[str, type[StrategyConfig]] = {name: get_entry(name).config_cls for name in dllm_strategies()}


def resolve(strategy: str | StrategyConfig, options: dict | None = None) -> StrategyConfig:
    """A validated dLLM config from a name, a ``name:key=value`` spec, or a config object."""
    options = dict(options or {})
    if isinstance(strategy, StrategyConfig):
        if get_entry(strategy.strategy_name).domain != "dllm":
            raise UnknownStrategyError(f"'{strategy.strategy_name}' is not a diffusion-language-model strategy")
        if options:
            return strategy.replace(**options)
        strategy.validate()
        return strategy
    if isinstance(strategy, str):
        request = StrategyRequest.parse(strategy)
        StrategyRequest(request.name).validate(domain="dllm")  # unknown names list every strategy; others the dLLM ones
        return request.config(**options)
    raise TypeError(f"a strategy is a name or a config object, got {type(strategy).__name__}")


def wrap(pipe, strategy: str | StrategyConfig, **options):
    """``diffaccel.wrap`` for dLLM pipelines, also accepting ``"name:key=value"`` specs."""
    return _core_wrap(pipe, resolve(strategy, options))


__all__ = ["DLLM_STRATEGIES", "dllm_strategies", "resolve", "summary", "unwrap", "wrap"]
