"""What the caches hold: the summary's peak bytes against a count from the unit outputs themselves,
factors kept on the CPU or in a lower dtype, and `unwrap` releasing every cached tensor."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

import diffaccel
from diffaccel.testing.tiny_models import at_step, build_tiny, tiny_inputs

FLUX = "FluxTransformer2DModel"
STEPS = 6


def _loop(model, inputs):
    diffaccel.new_run(model, num_inference_steps=STEPS)
    with torch.no_grad():
        return [model(**at_step(FLUX, inputs, n, STEPS))[0] for n in range(STEPS)]


def _unit_output_elements(model, names, inputs) -> int:
    """Elements of every cache unit's output in one unwrapped call (plain torch hooks)."""
    total = []
    handles = [
        model.get_submodule(n).register_forward_hook(
            lambda m, a, out: total.append(
                sum(t.numel() for t in (out if isinstance(out, tuple) else (out,)) if isinstance(t, torch.Tensor))
            )
        )
        for n in names
    ]
    with torch.no_grad():
        model(**at_step(FLUX, inputs, 0, STEPS))
    for h in handles:
        h.remove()
    return sum(total)


@pytest.mark.parametrize("order,factor_dtype,bytes_per", [(1, "float32", 4), (2, "float32", 4), (1, "bfloat16", 2)])
def test_peak_cache_bytes_counts_every_factor(order, factor_dtype, bytes_per):
    model, inputs = build_tiny(FLUX), tiny_inputs(FLUX)
    tag_options = dict(interval=2, warmup=1, order=order, factor_dtype=factor_dtype)
    diffaccel.wrap(model, "taylorseer", **tag_options)
    _loop(model, inputs)
    summary = diffaccel.summary(model)
    names = [h.name for h in diffaccel.api.engines(model)[""].unit_hooks]
    diffaccel.unwrap(model)
    expected = (order + 1) * _unit_output_elements(model, names, inputs) * bytes_per
    assert summary.peak_cache_bytes == expected
    assert list(summary.extra["peak_cache_bytes_by_strategy"].values()) == [expected]


def test_peak_survives_the_end_of_a_pipeline_call():
    from diffaccel.testing.tiny_pipelines import tiny_flux_pipeline

    pipe = diffaccel.wrap(tiny_flux_pipeline(), "taylorseer", interval=2, warmup=1)
    pipe("a cat", num_inference_steps=4, height=16, width=16, max_sequence_length=16, output_type="pt")
    summary = diffaccel.summary(pipe)
    assert summary.cache_bytes == 0 and summary.peak_cache_bytes > 0


def test_factors_on_the_cpu_give_the_same_output():
    inputs = tiny_inputs(FLUX)
    default = _loop(diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=3, warmup=1), inputs)
    on_cpu = _loop(diffaccel.wrap(build_tiny(FLUX), "taylorseer", interval=3, warmup=1, factor_device="cpu"), inputs)
    assert all(torch.equal(a, b) for a, b in zip(default, on_cpu))


@pytest.mark.parametrize("strategy", ["taylorseer", "hyca", "taocache", ["taylorseer", "taocache"]])
def test_unwrap_releases_every_cached_tensor(strategy):
    model, inputs = build_tiny(FLUX), tiny_inputs(FLUX)
    diffaccel.wrap(model, strategy)
    for _ in range(2):  # hyca: the probe run, then a forecasting run
        _loop(model, inputs)
    engine = diffaccel.api.engines(model)[""]
    held = [weakref.ref(t) for t in _tensors_in(engine)]
    assert held, "the run left cached tensors to release"
    del engine
    diffaccel.unwrap(model)
    gc.collect()
    alive = [r for r in held if r() is not None]
    assert not alive, f"{len(alive)} of {len(held)} cached tensors outlive unwrap"


def _tensors_in(obj, seen=None, depth=0):
    """Every tensor reachable from `obj` through attributes, dicts and lists (the engine's caches), except
    the model's own parameters and buffers."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 8 or isinstance(obj, (torch.nn.Module, type)):
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [obj]
    children = []
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple, set)):
        children = list(obj)
    elif hasattr(obj, "__dict__"):
        children = list(vars(obj).values())
    return [t for child in children for t in _tensors_in(child, seen, depth + 1)]
