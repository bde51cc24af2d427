"""The "stack" granularity [ours]: the whole block stack is one cache unit whose residual is forecast.

Reference: the unwrapped model with plain torch hooks that replace the last block's output, at a
skipped step, by the fresh stack input plus the residual of the last full step (order 0), computed
here independently of the engine. Every block must stay unexecuted on a skipped step.
"""

import inspect

import pytest
import torch

import diffaccel
from diffaccel.adapters.registry import get_adapter
from diffaccel.testing.tiny_models import TINY_MODELS, at_step, build_tiny, tiny_inputs

STACK_FAMILIES = sorted(name for name in TINY_MODELS if get_adapter(build_tiny(name)).stack is not None)
STEPS = 3


def _step_inputs(name, inputs, n):
    """Step n's inputs, with latents that move from step to step (so fresh stack inputs differ)."""
    step = at_step(name, inputs, n, STEPS)
    return {**step, "hidden_states": step["hidden_states"] * (1.0 - 0.2 * n) + 0.1 * n}


def _blocks(model, name):
    spec = get_adapter(model).stack
    return [block for list_name in spec.lists for block in getattr(model, list_name)], spec.carries


def _reference(model, name, inputs):
    """Unwrapped outputs of steps 0-2 where step 1 is skipped: last block returns fresh input + step-0 residual."""
    blocks, carries = _blocks(model, name)
    first, last = blocks[0], blocks[-1]
    signature = inspect.signature(first.forward)
    record = {}

    def grab_input(module, args, kwargs):
        bound = signature.bind(*args, **kwargs).arguments
        record["input"] = [bound[c] for c in carries]

    def replace_output(module, args, kwargs, output):
        outputs = output if isinstance(output, tuple) else (output,)
        if record["step"] == 0:
            record["residual"] = [None if o is None else o - i for o, i in zip(outputs, record["input"])]
        if record["step"] == 1:
            new = tuple(None if r is None else i + r for r, i in zip(record["residual"], record["input"]))
            return new if isinstance(output, tuple) else new[0]
        return output

    handles = [
        first.register_forward_pre_hook(grab_input, with_kwargs=True),
        last.register_forward_hook(replace_output, with_kwargs=True),
    ]
    outputs = []
    with torch.no_grad():
        for n in range(STEPS):
            record["step"] = n
            outputs.append(model(**_step_inputs(name, inputs, n))[0])
    for handle in handles:
        handle.remove()
    return outputs


@pytest.mark.parametrize("name", STACK_FAMILIES)
def test_skipped_step_is_fresh_input_plus_residual_and_runs_no_block(name):
    model = build_tiny(name)
    inputs = tiny_inputs(name, batch=2)
    reference = _reference(model, name, inputs)
    diffaccel.wrap(model, "taylorseer", interval=2, warmup=1, order=0, granularity="stack")
    blocks, _ = _blocks(model, name)
    calls = []
    # A hook on the block itself fires even when diffaccel skips it: probe the block's last layer (DiT's
    # forward calls the first block's timestep embedder itself, outside any block).
    for block in blocks:
        inner = [m for n, m in block.named_modules() if n and any(True for _ in m.parameters(recurse=False))][-1]
        inner.register_forward_hook(lambda *_: calls.append(step[0]))
    outputs = []
    with torch.no_grad():
        for n in range(STEPS):
            step = [n]
            outputs.append(model(**_step_inputs(name, inputs, n))[0])
    assert torch.equal(outputs[0], reference[0]) and torch.equal(outputs[2], reference[2])
    assert torch.equal(outputs[1], reference[1])
    assert not torch.equal(outputs[1], _reference_unskipped(name, inputs))  # the forecast was used
    assert sorted(set(calls)) == [0, 2] and calls.count(0) == len(blocks)
    stats = diffaccel.summary(model)
    assert (stats.steps, stats.full_steps) == (STEPS, 2)
    assert stats.computed_fraction == pytest.approx(2 / 3)


def _reference_unskipped(name, inputs):
    model = build_tiny(name)
    with torch.no_grad():
        return model(**_step_inputs(name, inputs, 1))[0]


@pytest.mark.parametrize("name", STACK_FAMILIES)
def test_interval_one_is_bit_identical(name):
    model = build_tiny(name)
    inputs = tiny_inputs(name)
    with torch.no_grad():
        reference = [model(**_step_inputs(name, inputs, n))[0] for n in range(STEPS)]
        diffaccel.wrap(model, "hyca", interval=1, granularity="stack")
        wrapped = [model(**_step_inputs(name, inputs, n))[0] for n in range(STEPS)]
    assert all(torch.equal(a, b) for a, b in zip(reference, wrapped))


@pytest.mark.parametrize("name", ["UNet2DModel", "LatteTransformer3DModel"])
def test_families_without_a_stack_say_so(name):
    with pytest.raises(diffaccel.UnsupportedModelError, match="no block stack"):
        diffaccel.wrap(build_tiny(name), "taylorseer", granularity="stack")


def test_unknown_granularity_is_rejected():
    with pytest.raises(ValueError, match="granularity must be one of"):
        diffaccel.wrap(build_tiny("FluxTransformer2DModel"), "taylorseer", granularity="blocks")


def test_model_granularity_forecasts_the_whole_output():
    name = "DiTTransformer2DModel"
    model = build_tiny(name)
    inputs = tiny_inputs(name)
    diffaccel.wrap(model, "taylorseer", interval=2, warmup=1, order=0, granularity="model")
    with torch.no_grad():
        outputs = [model(**_step_inputs(name, inputs, n))[0] for n in range(STEPS)]
    assert torch.equal(outputs[1], outputs[0])  # order 0: the last full output, reused
    assert diffaccel.summary(model).full_steps == 2


class _NoAdapterDenoiser(torch.nn.Module):
    """A denoiser no adapter describes: whole-model granularity still applies."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x, timestep):
        return self.proj(x) * timestep


def test_model_granularity_needs_no_adapter():
    model = _NoAdapterDenoiser()
    x = torch.randn(2, 4)
    with torch.no_grad():
        expected = [model(x, torch.tensor(1.0 - n / 4)) for n in range(3)]
        diffaccel.wrap(model, "taylorseer:interval=2,warmup=1,order=1,granularity=model")
        got = [model(x, torch.tensor(1.0 - n / 4)) for n in range(3)]
    assert torch.equal(got[0], expected[0]) and torch.equal(got[2], expected[2])
    # step 1 is forecast from step 0 alone (order-1 factors need two full steps): the step-0 output
    assert torch.equal(got[1], expected[0])
    with pytest.raises(diffaccel.UnsupportedModelError):
        diffaccel.wrap(_NoAdapterDenoiser(), "taylorseer", granularity="stack")
