"""Property on real (tiny) diffusers pipelines: after any sequence of pipeline calls (FLUX with and without true
CFG, Stable Diffusion's UNet with and without CFG, Wan; image counts and resolutions changing between runs;
runs raising inside the denoiser or from the step callback; two pipelines sharing one denoiser, either of them
wrapped; unwrap and re-wrap with another strategy), every finished run equals the same call on a freshly
wrapped copy, bit for bit. `eval/fuzz.py` runs thousands of these; compile after wrap is slow on CPU, so CI
runs it once here and the benchmark draws it rarely."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from diffaccel.testing.pipeline_sequences import (
    FAMILIES,
    STRATEGIES,
    Compile,
    PipelineSequenceChecker,
    PipeRewrap,
    PipeRun,
)

_CHECKERS: dict[str, PipelineSequenceChecker] = {}


def _checker(kind: str) -> PipelineSequenceChecker:
    if kind not in _CHECKERS:
        _CHECKERS[kind] = PipelineSequenceChecker(kind)
    return _CHECKERS[kind]


@st.composite
def pipe_runs(draw):
    steps = draw(st.integers(2, 5))
    failure = draw(st.sampled_from(["none", "none", "none", "inside", "callback"]))
    return PipeRun(
        pipe=draw(st.integers(0, 1)),
        steps=steps,
        images=draw(st.integers(1, 2)),
        size=draw(st.integers(0, 2)),
        cfg=draw(st.sampled_from(["on", "off"])),
        seed=draw(st.integers(0, 3)),
        fail_call=draw(st.integers(0, steps - 1)) if failure == "inside" else None,
        fail_step=draw(st.integers(0, steps - 1)) if failure == "callback" else None,
    )


rewraps = st.builds(PipeRewrap, st.integers(0, len(STRATEGIES) - 1), st.integers(0, 1))
operations = st.lists(st.one_of(pipe_runs(), pipe_runs(), rewraps), min_size=2, max_size=5)


# no shrinking: a failure prints its whole sequence, and shrinking one costs minutes of CPU
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(operations, st.integers(1, len(STRATEGIES) - 1), st.integers(0, 1))
@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_every_pipeline_run_equals_a_fresh_wrap(kind, ops, first, pipe):
    assert _checker(kind).run_sequence([PipeRewrap(first, pipe), *ops]) == []


def test_compile_after_wrap_equals_a_fresh_wrap():
    """`torch.compile` of the wrapped denoiser, in place, after wrap (backend "eager": Dynamo traces through the
    hooks and guards on their state, and the result stays comparable bit for bit with eager runs)."""
    checker = _checker("flux")
    compared = checker.runs_compared
    assert checker.run_sequence([PipeRewrap(1, 0), Compile(), PipeRun(0, 2, 1, 0, "off", 0)]) == []
    assert checker.runs_compared == compared + 1 and checker.compiles >= 1
