"""Strategy names → (config class, strategy class, domain), and turning user input into a config.

`wrap(obj, "taylorseer", interval=4)`, `wrap(obj, TaylorSeerConfig(interval=4))` and the CLI's
`taylorseer:interval=4` all end up here. A strategy request in text is `name[:key=value,...]`; several
joined by `+` compose (`taylorseer:interval=4+taocache`); `StrategyRequest` is the one place that text is
read and written.

Every strategy belongs to a domain: what kind of model it accelerates (`DOMAINS`). A domain registers its
strategies when its module is imported; domains that are not imported by `import diffaccel` (diffusion
LMs, policies) are named with `register_domain_module` and imported the first time the registry is read,
so this module never imports a domain itself.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from dataclasses import dataclass
from typing import Any

from ..core.errors import UnknownStrategyError
from .base import Strategy, StrategyConfig

#: what a strategy accelerates: image/video denoisers (diffusers pipelines), diffusion language models,
#: diffusion policies
DOMAINS = ("denoiser", "dllm", "policy")


@dataclass(frozen=True)
class StrategyEntry:
    name: str
    config_cls: type[StrategyConfig]
    strategy_cls: type[Strategy]
    description: str
    domain: str = "denoiser"


_STRATEGIES: dict[str, StrategyEntry] = {}
_PENDING_DOMAIN_MODULES: list[str] = []


def register_strategy(
    config_cls: type[StrategyConfig], strategy_cls: type[Strategy], description: str, domain: str = "denoiser"
) -> None:
    """Make a strategy available to `wrap` under `config_cls.strategy_name`."""
    name = config_cls.strategy_name
    if not name:
        raise ValueError(f"{config_cls.__name__} has no strategy_name")
    if domain not in DOMAINS:
        raise ValueError(f"unknown strategy domain {domain!r}; domains: {', '.join(DOMAINS)}")
    if name in _STRATEGIES and _STRATEGIES[name].strategy_cls is not strategy_cls:
        raise ValueError(f"a different strategy is already registered as '{name}'")
    _STRATEGIES[name] = StrategyEntry(name, config_cls, strategy_cls, description, domain)


def register_domain_module(module_name: str) -> None:
    """Name a module that registers a domain's strategies when imported; it is imported lazily, the
    first time the list of strategies is needed (keeps `import diffaccel` light)."""
    if module_name not in _PENDING_DOMAIN_MODULES:
        _PENDING_DOMAIN_MODULES.append(module_name)


def strategies(domain: str | None = None) -> list[str]:
    """Names of every registered strategy, or of those of one domain (see `DOMAINS`)."""
    _import_domains()
    if domain is not None and domain not in DOMAINS:
        raise ValueError(f"unknown strategy domain {domain!r}; domains: {', '.join(DOMAINS)}")
    return sorted(n for n, e in _STRATEGIES.items() if domain is None or e.domain == domain)


def get_entry(name: str) -> StrategyEntry:
    _import_domains()
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
        if "preset" in preset:  # a tuned preset named by the config object: under the fields it sets itself
            defaults = type(strategy)()
            own = {
                f.name: getattr(strategy, f.name)
                for f in dataclasses.fields(strategy)
                if getattr(strategy, f.name) != getattr(defaults, f.name)
            }
            strategy = defaults.replace(**{**preset, **own})
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
    request = StrategyRequest.parse(spec)
    return request.name, request.options_dict


def _reject_stray_colon(spec: str, key: str, raw: str) -> None:
    """`taylorseer:interval=3:order=1` separates options with a colon; say so instead of reporting that
    interval "3:order=1" is not an int."""
    stray = re.search(r":[A-Za-z_]\w*=", raw)
    if stray:
        tail = raw[stray.start() :]
        raise UnknownStrategyError(
            f"'{spec}': stray '{tail}' after {key}={raw[: stray.start()]}; options are separated by commas, "
            f"e.g. '{spec.partition(':')[0]}:{key}={raw[: stray.start()]},{tail[1:]}'"
        )


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


def format_option_value(value: Any) -> str:
    """The text form of an option value, read back by `parse_option_value` (tuples are joined by `/`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "/".join(format_option_value(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class StrategyRequest:
    """One strategy asked for by name with options, as the user wrote it (`taylorseer:interval=4`).

    `options` keep the order they were given in; `sorted()` gives the canonical form that names result rows.
    `config(preset)` applies the model family's preset first and the options on top, as `wrap` does."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, name: str, options: dict[str, Any] | None = None) -> StrategyRequest:
        return cls(name, tuple((options or {}).items()))

    @classmethod
    def parse(cls, text: str) -> StrategyRequest:
        """One request `name[:key=value,...]`; values typed by `parse_option_value`."""
        name, _, rest = text.partition(":")
        options: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, raw = item.partition("=")
            if not eq:
                raise UnknownStrategyError(f"Option '{item}' in '{text}' is not of the form key=value.")
            _reject_stray_colon(text, key.strip(), raw.strip())
            options[key.strip()] = parse_option_value(raw.strip())
        return cls.of(name.strip(), options)

    @property
    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def options_text(self) -> str:
        return ",".join(f"{k}={format_option_value(v)}" for k, v in self.options)

    @property
    def text(self) -> str:
        """`name:key=value,...`; parses back to an equal request."""
        return self.name + (f":{self.options_text}" if self.options else "")

    def sorted(self) -> StrategyRequest:
        """The same request with its options sorted by name (the canonical form)."""
        return StrategyRequest(self.name, tuple(sorted(self.options)))

    @property
    def entry(self) -> StrategyEntry:
        return get_entry(self.name)

    def validate(self, domain: str | None = None) -> StrategyRequest:
        """Check the name (and its domain) and the options before any model loads: unknown names and
        options raise `UnknownStrategyError` listing what exists; bad values raise with the request's text."""
        entry = self.entry
        if domain is not None and entry.domain != domain:
            raise UnknownStrategyError(
                f"'{self.name}' is a {DOMAIN_TITLES[entry.domain]} strategy, not a {DOMAIN_TITLES[domain]} strategy; "
                f"use one of: {', '.join(strategies(domain))}"
            )
        try:
            entry.config_cls().replace(**self.options_dict)
        except (TypeError, ValueError) as error:
            if isinstance(error, UnknownStrategyError):
                raise
            raise UnknownStrategyError(f"bad option value in '{self.text}': {error}") from error
        return self

    def config(self, preset: dict[str, Any] | None = None, /, **overrides) -> StrategyConfig:
        """The config: class defaults, then `preset` (the model family's), then the request's options,
        then `overrides` (which may hold a `preset=` option naming a tuned preset: positional-only above)."""
        return resolve_config(self.name, preset or {}, {**self.options_dict, **overrides})


DOMAIN_TITLES = {"denoiser": "image/video-denoiser", "dllm": "diffusion-language-model", "policy": "diffusion-policy"}


def parse_requests(text: str) -> list[StrategyRequest]:
    """A request or a composition `a:key=value+b` (each part with its own options)."""
    if not text.strip():
        raise UnknownStrategyError("empty strategy spec")
    return [StrategyRequest.parse(part) for part in text.split("+")]


def format_requests(requests) -> str:
    """The text of a composition, read back by `parse_requests`."""
    return "+".join(r.text for r in requests)


def _validated(config: StrategyConfig) -> StrategyConfig:
    config.validate()
    return config


def _import_domains() -> None:
    """Import the domain modules named with `register_domain_module`; each registers its strategies."""
    while _PENDING_DOMAIN_MODULES:
        module_name = _PENDING_DOMAIN_MODULES.pop(0)  # popped first: the module may read the registry itself
        try:
            importlib.import_module(module_name)
        except BaseException:
            _PENDING_DOMAIN_MODULES.insert(0, module_name)
            raise
