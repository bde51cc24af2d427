"""Which thread a run belongs to, so that a wrapped object used from two threads at once refuses the second.

A wrapped denoiser holds the cache state of one run (one generation). Two threads calling the same
wrapped object at once would interleave their steps in that state and each get an output that is neither
thread's sequential result, silently. The engine therefore lets one thread own the run in progress: a
call (or a new run, or a reset) from another thread while that run is unfinished raises
`ConcurrentUseError` before touching any state, so the owner's run goes on unharmed. A run is finished
when it was released (a pipeline call ended), when it reached its planned step count, or when its thread
has ended; then any thread may start the next one. Different wrapped objects share nothing and run in
parallel freely.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .errors import ConcurrentUseError


class RunOwner:
    """The thread that owns the run in progress of one engine (None: no run in progress)."""

    def __init__(self, what: str):
        self.what = what
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def claim(self, run_finished: Callable[[], bool]) -> None:
        """Make the calling thread the owner, or raise if another thread's run is still in progress."""
        me = threading.current_thread()
        with self._lock:
            self._check(me, run_finished)
            self._thread = me

    def release(self, run_finished: Callable[[], bool]) -> None:
        """The run is over (raises, without releasing, when another thread's run is still in progress)."""
        with self._lock:
            self._check(threading.current_thread(), run_finished)
            self._thread = None

    def _check(self, me: threading.Thread, run_finished: Callable[[], bool]) -> None:
        other = self._thread
        if other is None or other is me or not other.is_alive() or run_finished():
            return
        raise ConcurrentUseError(
            f"{self.what} is in the middle of a run started by thread '{other.name}'; thread '{me.name}' called it "
            "at the same time. A wrapped object holds the cache state of one generation, so it cannot serve two "
            "threads at once: wrap one pipeline (or model) per thread, or put a lock around each call."
        )
