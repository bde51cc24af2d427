"""Strategy names → (config class, strategy class), and turning user input into a config.

`wrap(obj, "taylorseer", interval=4)`, `wrap(obj, TaylorSeerConfig(interval=4))` and the CLI's
`taylorseer:interval=4` all end up here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..core.errors import UnknownStrategyError
from .base import Strategy, StrategyConfig


@dataclass(frozen=True)
class StrategyEntry:
    name: str
    config_cls: type[StrategyConfig]
    strategy_cls: type[Strategy]
    description: str


_STRATEGIES: dict[str, StrategyEntry] = {}


def register_strategy(config_cls: type[StrategyConfig], strategy_cls: type[Strategy], description: str) -> None:
    """Make a strategy available to `wrap` under `config_cls.strategy_name`."""
    name = config_cls.strategy_name
    if not name:
        raise ValueError(f"{config_cls.__name__} has no strategy_name")
    if name in _STRATEGIES and _STRATEGIES[name].strategy_cls is not strategy_cls:
        raise ValueError(f"a different strategy is already registered as '{name}'")
    _STRATEGIES[name] = StrategyEntry(name, config_cls, strategy_cls, description)


def strategies() -> list[str]:
    """Names of every registered strategy."""
    _ensure_builtins()
    return sorted(_STRATEGIES)


def get_entry(name: str) -> StrategyEntry:
    _ensure_builtins()
    if not isinstance(name, str):
        raise TypeError(f"a strategy is a name (str) or a config object, got {type(name).__name__}")
    if name not in _STRATEGIES:
        raise UnknownStrategyError(f"Unknown strategy '{name}'. Available: {', '.join(sorted(_STRATEGIES))}.")
    return _STRATEGIES[name]


def resolve_config(strategy: str | StrategyConfig, preset: dict[str, Any], options: dict[str, Any]) -> StrategyConfig:
    """Build the config: the class defaults, then the model family's preset, then the user's options.

    A config object passed by the user is taken as it is (its own values win over the preset);
    options passed next to it still override it.
    """
    if isinstance(strategy, StrategyConfig):
        return strategy.replace(**options) if options else _validated(strategy)
    entry = get_entry(strategy)
    config = entry.config_cls()
    config = config.replace(**{k: v for k, v in preset.items()})
    return config.replace(**options) if options else config


def build_strategy(config: StrategyConfig) -> Strategy:
    entry = get_entry(config.strategy_name)
    return entry.strategy_cls(config)


def parse_strategy_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse the CLI form `name:key=value,key=value` into a name and typed options.

    Values are read as int, float, bool (true/false) or str, in that order.
    """
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        if not eq:
            raise UnknownStrategyError(f"Option '{item}' in '{spec}' is not of the form key=value.")
        _reject_stray_colon(spec, key.strip(), raw.strip())
        options[key.strip()] = parse_option_value(raw.strip())
    return name.strip(), options


def _reject_stray_colon(spec: str, key: str, raw: str) -> None:
    """`taylorseer:interval=3:order=1` separates options with a colon; say so instead of reporting that
    interval "3:order=1" is not an int."""
    stray = re.search(r":[A-Za-z_]\w*=", raw)
    if stray:
        tail = raw[stray.start():]
        raise UnknownStrategyError(
            f"'{spec}': stray '{tail}' after {key}={raw[:stray.start()]}; options are separated by commas, "
            f"e.g. '{spec.partition(':')[0]}:{key}={raw[:stray.start()]},{tail[1:]}'")


def parse_option_value(raw: str) -> Any:
    """`"4"` -> 4, `"0.3"` -> 0.3, `"true"` -> True, anything else stays text (spec options, `--scheduler`)."""
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw


def _validated(config: StrategyConfig) -> StrategyConfig:
    config.validate()
    return config


_BUILTINS_LOADED = False


def _ensure_builtins() -> None:
    """Register the strategies shipped with diffaccel (imported lazily to avoid import cycles)."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    from .hyca import HyCa, HyCaConfig
    from .taocache import TaoCache, TaoCacheConfig
    from .taylorseer import TaylorSeer, TaylorSeerConfig

    register_strategy(TaylorSeerConfig, TaylorSeer, "Taylor-series forecasting of cached sub-module outputs")
    register_strategy(HyCaConfig, HyCa, "per-channel hybrid solvers chosen from a probe run")
    register_strategy(TaoCacheConfig, TaoCache, "late-stage fixed-point forecast of the whole denoiser output (ours)")
    from ..dllm import strategies as _dllm_strategies  # noqa: F401  (registers the diffusion-LM strategies)
