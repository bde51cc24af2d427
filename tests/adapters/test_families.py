"""Every built-in adapter family, on the real diffusers class built tiny and randomly initialised.

Reference: the same model unwrapped. Interval 1 must be bit-identical, unwrap must restore
bit-identical outputs, and on a real schedule every cache unit must execute exactly at the full
steps (counted with torch forward hooks on modules inside the units, independent of diffaccel's
own statistics).
"""

import pytest
import torch

import diffaccel
from diffaccel.forecast.schedules import taylorseer_full_steps
from diffaccel.testing.tiny_models import TINY_MODELS, at_step, build_tiny, tiny_inputs

FAMILIES = sorted(TINY_MODELS)
STEPS = 5


def _denoise(model, name, inputs, steps=STEPS):
    with torch.no_grad():
        return [model(**at_step(name, inputs, n, steps))[0] for n in range(steps)]


@pytest.mark.parametrize("name", FAMILIES)
def test_interval_one_and_unwrap_are_bit_identical(name):
    model = build_tiny(name)
    inputs = tiny_inputs(name, batch=2)
    reference = _denoise(model, name, inputs)
    diffaccel.wrap(model, "taylorseer", interval=1)
    wrapped = _denoise(model, name, inputs)
    stats = diffaccel.summary(model)
    assert all(torch.equal(a, b) for a, b in zip(reference, wrapped))
    assert (stats.steps, stats.full_steps, stats.computed_fraction) == (STEPS, STEPS, 1.0)
    diffaccel.unwrap(model)
    assert all(torch.equal(a, b) for a, b in zip(reference, _denoise(model, name, inputs)))
    assert not hasattr(model, "_diffaccel")


def _execution_probes(model):
    """For each cache unit (and feeder), a module inside it whose executions we count."""
    engine = diffaccel.engines(model)[""]
    probes = {}
    for hook in engine.unit_hooks + engine.feeder_hooks:
        module = model.get_submodule(hook.name)
        inner = [m for n, m in module.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
        if inner:
            probes[hook.name] = inner[0]
    return probes


@pytest.mark.parametrize("name", FAMILIES)
def test_units_execute_exactly_at_full_steps(name):
    model = build_tiny(name)
    inputs = tiny_inputs(name)
    reference = _denoise(model, name, inputs)
    diffaccel.wrap(model, "taylorseer", interval=3, warmup=1)
    counts = {}
    for unit, probe in _execution_probes(model).items():
        counts[unit] = 0
        probe.register_forward_hook(lambda *_, unit=unit: counts.__setitem__(unit, counts[unit] + 1))
    outputs = _denoise(model, name, inputs)
    full = taylorseer_full_steps(STEPS, 3, 1)
    assert full == [0, 3]
    assert counts and all(c == len(full) for c in counts.values()), counts
    for n in full:
        assert torch.equal(outputs[n], reference[n])
    stats = diffaccel.summary(model)
    assert stats.full_steps == len(full) and stats.steps == STEPS
    assert 0.0 < stats.computed_fraction < 1.0


def test_unsupported_model_names_supported_classes():
    with pytest.raises(diffaccel.UnsupportedModelError, match="FluxTransformer2DModel.*register_adapter"):
        diffaccel.wrap(torch.nn.Linear(2, 2), "taylorseer")


def test_presets_follow_official_defaults():
    presets = {}
    for name in (
        "FluxTransformer2DModel",
        "WanTransformer3DModel",
        "HunyuanVideoTransformer3DModel",
        "DiTTransformer2DModel",
    ):
        model = diffaccel.wrap(build_tiny(name), "taylorseer")
        cfg = diffaccel.engines(model)[""].strategies[0].config
        presets[name] = (cfg.interval, cfg.order, cfg.warmup)
    assert presets == {
        "FluxTransformer2DModel": (6, 1, 3),
        "WanTransformer3DModel": (5, 1, 1),
        "HunyuanVideoTransformer3DModel": (5, 1, 1),
        "DiTTransformer2DModel": (4, 4, 2),
    }


def test_options_override_the_preset():
    model = diffaccel.wrap(build_tiny("FluxTransformer2DModel"), "taylorseer", interval=4)
    cfg = diffaccel.engines(model)[""].strategies[0].config
    assert (cfg.interval, cfg.order, cfg.warmup) == (4, 1, 3)
