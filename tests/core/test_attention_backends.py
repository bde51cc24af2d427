"""Wrapping composes with the attention implementation the user chose (those that run on a CPU)."""

from __future__ import annotations

import pytest
import torch

import diffaccel
from diffaccel.testing.tiny_models import at_step, build_tiny, tiny_inputs

FLUX = "FluxTransformer2DModel"
STEPS = 6


def _loop(model, inputs):
    with torch.no_grad():
        return [model(**at_step(FLUX, inputs, n, STEPS))[0] for n in range(STEPS)]


@pytest.mark.parametrize("backend", ["_native_math", "native"])
def test_wrap_on_a_chosen_attention_backend(backend):
    model, inputs = build_tiny(FLUX), tiny_inputs(FLUX)
    model.set_attention_backend(backend)
    plain = _loop(model, inputs)
    diffaccel.wrap(model, "taylorseer", interval=1)
    assert all(torch.equal(a, b) for a, b in zip(_loop(model, inputs), plain)), "interval 1 is the model itself"
    diffaccel.unwrap(model)
    diffaccel.wrap(model, "taylorseer", interval=3, warmup=1)
    diffaccel.new_run(model, num_inference_steps=STEPS)
    _loop(model, inputs)
    assert diffaccel.summary(model).full_steps < STEPS
    diffaccel.unwrap(model)
    assert all(torch.equal(a, b) for a, b in zip(_loop(model, inputs), plain)), "the backend stays chosen after unwrap"
    for processor in model.attn_processors.values():
        assert getattr(processor, "_attention_backend", backend) == backend


def test_wrap_on_a_replaced_attention_processor():
    """A user's own processor (here diffusers' FluxAttnProcessor instance swapped in) keeps running."""
    from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

    model, inputs = build_tiny(FLUX), tiny_inputs(FLUX)
    calls = []

    class Counting(FluxAttnProcessor):
        def __call__(self, *args, **kwargs):
            calls.append(1)
            return super().__call__(*args, **kwargs)

    model.set_attn_processor(Counting())
    plain = _loop(model, inputs)
    counted = len(calls)
    diffaccel.wrap(model, "taylorseer", interval=1)
    assert all(torch.equal(a, b) for a, b in zip(_loop(model, inputs), plain))
    assert len(calls) == 2 * counted
