"""Option values checked against the config's field annotations, at wrap time, for every strategy.

Each config is a dataclass whose annotations say what an option is (`interval: int`, `threshold: float |
None`, `solvers: str`). Checking values against them in one place means no strategy can accept a string
where it computes with a number, and fail later, mid-run, with an error far from its cause. A config's own
`validate` then checks ranges and choices.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from ..core.errors import OptionTypeError

_NAMES = {int: "an int", float: "a number", bool: "true or false", str: "a string", type(None): "None"}


def _allowed(annotation: Any) -> tuple[type, ...] | None:
    """The plain types an annotation admits, or None when it is not one this check understands (Any, ...)."""
    if annotation in _NAMES:
        return (annotation,)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = [_allowed(a) for a in typing.get_args(annotation)]
        if any(p is None for p in parts):
            return None
        return tuple(t for p in parts for t in p)
    return None


def _matches(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # bool is an int subclass, but interval=True is a mistake
        return bool in allowed
    if isinstance(value, int) and float in allowed:
        return True
    return isinstance(value, tuple(t for t in allowed if t is not bool))


def none_from_text(config_cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with the text "none" (any case) read as None for options that admit None but not text
    (`fast-dllm:threshold=None`): a spec is text, and `strify` writes None as "None"."""
    hints = typing.get_type_hints(config_cls)
    out = dict(values)
    for name, value in values.items():
        allowed = _allowed(hints.get(name))
        if (
            allowed
            and type(None) in allowed
            and str not in allowed
            and isinstance(value, str)
            and value.lower() == "none"
        ):
            out[name] = None
    return out


def check_option_types(config_cls: type, values: dict[str, Any]) -> None:
    """Raise `OptionTypeError` (a TypeError) naming the option, the expected type and the value given.
    Checked before the config is built, because some configs validate ranges in `__post_init__`."""
    hints = typing.get_type_hints(config_cls)
    for name, value in values.items():
        allowed = _allowed(hints.get(name))
        if allowed is None:
            continue
        if not _matches(value, allowed):
            expected = " or ".join(_NAMES[t] for t in allowed)
            raise OptionTypeError(
                f"{config_cls.strategy_name} option '{name}' must be {expected}, got {value!r} ({type(value).__name__})"
            )
