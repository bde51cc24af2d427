"""A wrapped object called from a second thread during a run refuses that call (the first thread's run goes
on unharmed); different wrapped objects in different threads equal their sequential runs."""

from __future__ import annotations

import threading

import torch

import diffaccel
from diffaccel.core.errors import ConcurrentUseError
from diffaccel.testing.tiny_models import at_step, build_tiny, tiny_inputs
from diffaccel.testing.tiny_pipelines import tiny_flux_pipeline

FLUX = "FluxTransformer2DModel"
STEPS = 6


def _call(pipe, seed=0, callback=None):
    return pipe(
        "a cat",
        num_inference_steps=STEPS,
        height=16,
        width=16,
        max_sequence_length=16,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
        callback_on_step_end=callback,
    ).images


def _in_thread(fn):
    """Run `fn` in a new thread; return (result, exception)."""
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            box["error"] = error

    thread = threading.Thread(target=target, name="second")
    thread.start()
    thread.join(timeout=120)
    return box.get("result"), box.get("error")


def test_a_second_thread_is_refused_and_the_first_run_is_unharmed():
    pipe = diffaccel.wrap(tiny_flux_pipeline(), "taylorseer", interval=2, warmup=1)
    expected = _call(pipe)
    seen = {}

    def meanwhile(pipe_, i, t, kwargs):
        if i == 2:  # the first thread is mid-run: a second thread calls the same pipe now
            seen["result"], seen["error"] = _in_thread(lambda: _call(pipe, seed=1))
        return kwargs

    first = _call(pipe, callback=meanwhile)
    assert isinstance(seen["error"], ConcurrentUseError) and "thread" in str(seen["error"])
    assert "one pipeline (or model) per thread" in str(seen["error"])
    assert torch.equal(first, expected)
    assert diffaccel.summary(pipe).steps == STEPS
    assert torch.equal(_call(pipe), expected), "after the run another call (any thread) works"
    result, error = _in_thread(lambda: _call(pipe))
    assert error is None and torch.equal(result, expected)


def test_a_bare_model_mid_loop_refuses_another_thread():
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=2, warmup=1)
    inputs = tiny_inputs(FLUX)

    def loop(pause_at=None):
        diffaccel.new_run(model, num_inference_steps=STEPS)
        outs = []
        with torch.no_grad():
            for n in range(STEPS):
                if n == pause_at:
                    for attempt in (lambda: model(**at_step(FLUX, inputs, 0, STEPS)), lambda: diffaccel.new_run(model)):
                        _, error = _in_thread(attempt)
                        assert isinstance(error, ConcurrentUseError)
                outs.append(model(**at_step(FLUX, inputs, n, STEPS))[0])
        return outs

    expected = loop()
    assert all(torch.equal(a, b) for a, b in zip(loop(pause_at=3), expected))
    result, error = _in_thread(loop)  # the run reached its planned steps: another thread may start one
    assert error is None and all(torch.equal(a, b) for a, b in zip(result, expected))


def test_two_wrapped_pipelines_in_two_threads_equal_sequential_runs():
    pipes = [diffaccel.wrap(tiny_flux_pipeline(), "taylorseer", interval=2, warmup=1) for _ in range(2)]
    sequential = [_call(p, seed=s) for p, s in zip(pipes, (0, 1))]
    results: dict[int, torch.Tensor] = {}
    start = threading.Barrier(2)

    def work(i):
        start.wait()
        results[i] = _call(pipes[i], seed=i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(torch.equal(results[i], sequential[i]) for i in range(2))
