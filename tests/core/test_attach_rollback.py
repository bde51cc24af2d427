"""`Engine.attach` is plan, register, commit: a failure after some hooks are registered leaves the model
bit-identical to the never-wrapped one and without any hook."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import diffaccel
from diffaccel.adapters.registry import find_adapter
from diffaccel.core.engine import Engine
from diffaccel.strategies.taylorseer import TaylorSeer, TaylorSeerConfig
from diffaccel.testing.tiny_models import build_tiny, tiny_inputs

NAME = "FluxTransformer2DModel"


def _hooks(model: torch.nn.Module) -> dict[str, list[str]]:
    found = {}
    for name, module in model.named_modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None and registry.hooks:
            found[name] = list(registry.hooks)
    return found


@pytest.fixture
def model_and_reference():
    model = build_tiny(NAME)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    forward = model.forward
    return model, state, forward


def _assert_untouched(model, state, forward):
    assert _hooks(model) == {}
    assert model.forward == forward
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_a_missing_feeder_after_some_hooks_rolls_everything_back(model_and_reference):
    model, state, forward = model_and_reference
    adapter = find_adapter(model)
    first, *rest = adapter.units
    broken = dataclasses.replace(adapter, units=(first, *rest[:-1], dataclasses.replace(rest[-1], feeders=("nope",))))
    engine = Engine(model, broken, [TaylorSeer(TaylorSeerConfig())])
    with pytest.raises(ValueError, match="feeder 'nope'"):
        engine.attach()
    _assert_untouched(model, state, forward)
    assert engine.unit_hooks == [] and engine.feeder_hooks == []


def test_a_strategy_attach_failure_rolls_everything_back(model_and_reference):
    model, state, forward = model_and_reference

    class Failing(TaylorSeer):
        def attach(self, engine, owner):
            assert _hooks(model), "the hooks are registered before strategies attach"
            raise RuntimeError("attach failed")

    engine = Engine(model, find_adapter(model), [Failing(TaylorSeerConfig())])
    with pytest.raises(RuntimeError, match="attach failed"):
        engine.attach()
    _assert_untouched(model, state, forward)


def test_wrap_after_a_failed_attach_gives_the_unwrapped_outputs(model_and_reference):
    model, state, forward = model_and_reference
    inputs = tiny_inputs(NAME)
    with torch.no_grad():
        reference = model(**inputs)[0]

    class Failing(TaylorSeer):
        def attach(self, engine, owner):
            raise RuntimeError("attach failed")

    with pytest.raises(RuntimeError):
        Engine(model, find_adapter(model), [Failing(TaylorSeerConfig())]).attach()
    with torch.no_grad():
        again = model(**inputs)[0]
    assert torch.equal(reference, again)
    diffaccel.wrap(model, "taylorseer")  # a later wrap works on the rolled-back model
    diffaccel.unwrap(model)
    with torch.no_grad():
        assert torch.equal(model(**inputs)[0], reference)
