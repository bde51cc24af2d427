"""The extension point for strategies that attach their own hooks (diffusion-LM caches): they run
on the same engine, clock and stats, report through `summary`, and `unwrap` removes them."""

from dataclasses import dataclass

import pytest
import torch
from diffusers.hooks import HookRegistry, ModelHook

import diffaccel
from diffaccel.strategies.base import Strategy, StrategyConfig
from diffaccel.strategies.registry import register_strategy


class _Halve(ModelHook):
    def __init__(self, engine):
        super().__init__()
        self.engine = engine

    def post_forward(self, module, output):
        self.engine.stats.count("halved_calls")
        return output / 2


@dataclass
class HalveConfig(StrategyConfig):
    strategy_name = "test-halve"


class Halve(Strategy):
    unit_level = "custom"

    def attach(self, engine, owner):
        self.owner = owner
        HookRegistry.check_if_exists_or_initialize(engine.root.inner).register_hook(_Halve(engine), "test.halve")

    def detach(self, engine, owner):
        HookRegistry.check_if_exists_or_initialize(engine.root.inner).remove_hook("test.halve")

    def report(self, engine):
        return {"forwards": engine.stats.root_calls, "full_steps": 0}


class TinyLM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = torch.nn.Linear(3, 3)

    def forward(self, ids):
        return self.inner(ids)


class TinyLMPipeline:
    def __init__(self):
        self.model = TinyLM()

    def __call__(self, x):
        return self.model(x)


def test_custom_strategy_attaches_reports_and_detaches():
    pipe = TinyLMPipeline()
    x = torch.randn(2, 3)
    reference = pipe(x)
    diffaccel.wrap(pipe, "test-halve")
    assert diffaccel.engines(pipe)["model"].strategies[0].owner is pipe
    diffaccel.new_run(pipe)
    outputs = [pipe(x) for _ in range(3)]
    assert all(torch.equal(o, reference / 2) for o in outputs)
    stats = diffaccel.summary(pipe)
    assert stats.steps == 3 and stats.full_steps == 0
    assert stats.extra == {"halved_calls": 3, "forwards": 3}
    assert stats.as_dict()["forwards"] == 3 and "halved_calls: 3" in str(stats)
    diffaccel.unwrap(pipe)
    assert torch.equal(pipe(x), reference) and not pipe.model.inner._diffusers_hook.hooks


class ShapeFreeHalve(Halve):
    variable_input_shapes = True


@dataclass
class ShapeFreeConfig(StrategyConfig):
    strategy_name = "test-shape-free"


def test_variable_input_shapes_opt_out_of_the_fixed_shape_check():
    fixed = diffaccel.wrap(TinyLMPipeline(), "test-halve")
    free = diffaccel.wrap(TinyLMPipeline(), "test-shape-free")
    for pipe in (fixed, free):
        diffaccel.new_run(pipe)
        pipe(torch.randn(2, 3))
    free(torch.randn(5, 3))
    with pytest.raises(diffaccel.RunStateError, match="changed within a run"):
        fixed(torch.randn(5, 3))
    assert "unit kind" not in str(diffaccel.summary(free))


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """Register the test strategies for one test only, so no other test sees them."""
    from diffaccel.strategies import registry

    registry.strategies()  # load the built-ins first
    monkeypatch.setattr(registry, "_STRATEGIES", dict(registry._STRATEGIES))
    register_strategy(HalveConfig, Halve, "test strategy")
    register_strategy(ShapeFreeConfig, ShapeFreeHalve, "test strategy with variable shapes")


def test_a_strategy_with_unit_callbacks_must_be_a_unit_strategy():
    from diffaccel.strategies.base import UnitStrategy

    with pytest.raises(TypeError, match="derive it from diffaccel.strategies.base.UnitStrategy"):

        class Old(Strategy):  # relied on the old default unit level "blocks"
            unit_level = "blocks"

            def must_compute(self, step, state):
                return True

    class Fine(UnitStrategy):
        def new_state(self, unit): ...
        def must_compute(self, step, state): ...
        def observe(self, state, leaves, step): ...
        def forecast(self, state, step): ...

    assert Fine.unit_level == "blocks" and Strategy.unit_level == "custom"
