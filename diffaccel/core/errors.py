"""Errors diffaccel raises on bad input. Each says what was wrong and what to do instead."""


class DiffaccelError(Exception):
    """Base class of every diffaccel error."""


class UnsupportedModelError(DiffaccelError, TypeError):
    """The object has no registered adapter (no known cache units)."""


class UnsupportedFamilyError(DiffaccelError, ValueError):
    """The strategy, in this configuration, is not defined for the model's architecture family (for example a
    diffusion-LM cache rule that needs unshifted logits, on a Dream model)."""


class UnknownStrategyError(DiffaccelError, ValueError):
    """The strategy name or an option of it is unknown."""


class AlreadyWrappedError(DiffaccelError, RuntimeError):
    """`wrap` was called on an object that is already wrapped."""


class NotWrappedError(DiffaccelError, RuntimeError):
    """An operation that needs a wrapped object got an unwrapped one."""


class RunStateError(DiffaccelError, RuntimeError):
    """A call does not fit the current run (shapes changed mid-run, two calls at one step, ...)."""


class ConcurrentUseError(RunStateError):
    """A wrapped object was called from a second thread while a run of another thread was in progress."""


class OptionTypeError(DiffaccelError, TypeError):
    """A strategy option has the wrong type (text where a number is needed, a bool for an int, ...)."""
