"""Property: after any sequence of runs (batch and resolution changes, both guidance styles, runs that raise
inside or outside the denoiser, with or without new_run, unwrap and re-wrap with another strategy), every
finished run equals the same run on a freshly wrapped copy, bit for bit."""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from diffaccel.testing.sequences import STRATEGIES, Rewrap, Run, SequenceChecker

_CHECKER: list[SequenceChecker] = []


def _checker() -> SequenceChecker:
    if not _CHECKER:
        _CHECKER.append(SequenceChecker())
    return _CHECKER[0]


@st.composite
def runs(draw):
    steps = draw(st.integers(2, 7))
    fails = draw(st.booleans()) and draw(st.integers(0, 4)) == 0
    return Run(
        steps=steps,
        batch=draw(st.integers(1, 2)),
        side=draw(st.sampled_from([2, 3, 4])),
        guidance=draw(st.sampled_from(["batch", "contexts"])),
        seed=draw(st.integers(0, 3)),
        announce=draw(st.booleans()),
        fail_at=draw(st.integers(0, steps - 1)) if fails else None,
        fail_inside=draw(st.booleans()),
    )


operations = st.lists(
    st.one_of(runs(), runs(), st.builds(Rewrap, st.integers(0, len(STRATEGIES) - 1))), min_size=2, max_size=6
)


# no shrinking: a failure prints its whole sequence, and shrinking one costs minutes of CPU
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(operations, st.integers(1, len(STRATEGIES) - 1))
# found by this test: a doubled-batch run, then a run with named branches and no new_run, kept the first
# run's schedule decisions (the new run was detected only within one context)
@example([Run(3, 1, 2, "batch", 0, announce=False), Run(5, 1, 2, "contexts", 0, announce=False)], 1)
def test_every_run_equals_a_fresh_wrap(ops, first):
    checker = _checker()
    assert checker.run_sequence([Rewrap(first), *ops]) == []
