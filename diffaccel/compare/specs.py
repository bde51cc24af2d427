"""What `diffaccel compare` runs: strategy specs as the user writes them, parsed into one canonical form.

A spec is `name[:key=value,...]`:

* `none` (or `baseline`): the full-step run every other row is measured against;
* a diffaccel strategy (`diffaccel.strategies()`), e.g. `taylorseer:interval=4,order=2`, or a
  composition of several joined by `+`, each with its own options (`taylorseer:interval=4+taocache`);
* a peer run through its own code: `diffusers:<technique>[:options]` (diffusers' built-in cache hooks) or
  `cache-dit:<dbcache|taylorseer>[:options]`.

`--strategies` takes several specs, repeated or separated by commas or spaces. Because options are also
comma-separated, a comma-separated item is an option of the previous spec when it is `key=value` without a
colon (`taylorseer:interval=2,order=2,none` is two specs). Tuple-valued options are written with `/`
(`spatial_attention_timestep_skip_range=100/800`).

The canonical `tag` (options sorted by name) is what identifies a row in `results.jsonl`, so the same run
written two ways is recognised as the same run on `--resume`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import UnknownStrategyError
from ..strategies.registry import StrategyRequest, parse_requests
from .peer_table import peer_families, validate_peer_spec

BASELINE_NAMES = ("none", "baseline")


@dataclass(frozen=True)
class StrategySpec:
    """One row of the comparison: which family runs it, its name, and the options the user gave."""

    family: str  # "baseline" | "diffaccel" | "diffusers" | "cache-dit"
    name: str
    options: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def is_baseline(self) -> bool:
        return self.family == "baseline"

    @property
    def is_peer(self) -> bool:
        return self.family not in ("baseline", "diffaccel")

    @property
    def strategy(self) -> str:
        """The strategy column: `none`, `taylorseer`, `diffusers:fbc`, `cache-dit:dbcache`."""
        if self.family in ("baseline", "diffaccel"):
            return self.name
        return f"{self.family}:{self.name}"

    @property
    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def options_text(self) -> str:
        return StrategyRequest(self.name, self.options).options_text

    @property
    def parts(self) -> list[str]:
        """A diffaccel composition (`taylorseer:interval=4+taocache`) as one `name:options` text per
        strategy; a single strategy gives one part."""
        names = self.name.split("+")
        if len(names) == 1:
            return [self.strategy + (f":{self.options_text}" if self.options else "")]
        texts = []
        for name in names:
            own = [(k.split(".", 1)[1], v) for k, v in self.options if k.split(".", 1)[0] == name]
            texts.append(StrategyRequest(name, tuple(own)).text)
        return texts

    @property
    def tag(self) -> str:
        """Canonical text of the spec (options sorted); parses back to an equal spec."""
        return "+".join(self.parts)

    @property
    def slug(self) -> str:
        """The tag made safe for a file name."""
        return re.sub(r"[^A-Za-z0-9._=-]+", "_", self.tag)


def make_spec(family: str, name: str, options: dict[str, Any] | None = None) -> StrategySpec:
    return StrategySpec(family, name, tuple(sorted((options or {}).items())))


BASELINE = make_spec("baseline", "none")


def parse_spec(text: str) -> StrategySpec:
    """One spec (see the module docstring). Unknown diffaccel strategies and bad options raise
    `UnknownStrategyError` with the list of what exists; peer names are checked by the peer modules."""
    text = text.strip()
    if not text:
        raise UnknownStrategyError("empty strategy spec")
    head = text.split(":", 1)[0].strip().lower()
    if head in BASELINE_NAMES:
        request = StrategyRequest.parse(text)
        if request.options:
            raise UnknownStrategyError(f"the baseline '{request.name}' takes no options (got '{text}')")
        return BASELINE
    if head in peer_families():
        rest = text.split(":", 1)[1] if ":" in text else ""
        if not rest.strip():
            raise UnknownStrategyError(f"'{text}' names no technique; write e.g. '{head}:fbc' (see --list-strategies)")
        request = StrategyRequest.parse(rest)
        return validate_peer_spec(make_spec(head, request.name.lower(), request.options_dict))
    requests = parse_requests(text)
    for request in requests:  # unknown names and options raise with what exists
        request.entry.config_cls().replace(**request.options_dict)
    if len(requests) == 1:
        return make_spec("diffaccel", requests[0].name, requests[0].options_dict)
    # a composition: each part with its own options, kept apart as `name.key`
    options = {f"{r.name}.{key}": value for r in requests for key, value in r.options}
    return make_spec("diffaccel", "+".join(r.name for r in requests), options)


def split_spec_list(values: str | list[str] | tuple[str, ...]) -> list[str]:
    """Split `--strategies` values (repeated, or comma / space separated) into one string per spec."""
    if isinstance(values, str):
        values = [values]
    specs: list[str] = []
    for value in values:
        for token in filter(None, (t.strip() for t in re.split(r"[\s,]+", value))):
            key_part = token.split("=", 1)[0]
            continues_options = "=" in token and ":" not in key_part
            if continues_options:
                if not specs:
                    raise UnknownStrategyError(f"option '{token}' comes before any strategy name")
                sep = "," if ":" in specs[-1] else ":"
                specs[-1] = f"{specs[-1]}{sep}{token}"
            else:
                specs.append(token)
    return specs


def parse_spec_list(values: str | list[str] | tuple[str, ...], include_baseline: bool = True) -> list[StrategySpec]:
    """All specs in order, duplicates (same tag) dropped, the baseline first (it is needed for the metrics)."""
    parsed: list[StrategySpec] = []
    for text in split_spec_list(values):
        spec = parse_spec(text)
        if spec not in parsed:
            parsed.append(spec)
    if include_baseline:
        parsed = [BASELINE] + [s for s in parsed if not s.is_baseline]
    return parsed
