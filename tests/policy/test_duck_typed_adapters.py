"""The structural adapters attach to policies built here with the reference layouts (class names
diffaccel does not know), through the policy object itself."""

import pytest
import torch

import diffaccel
from diffaccel.adapters.registry import find_adapter
from tests.policy.reference_layouts import reference_transformer_policy, reference_unet_policy

STEPS = 10


def _act(policy, seed=0):
    obs = torch.randn(2, 2, 4, generator=torch.Generator().manual_seed(5))
    return policy.predict_action(
        {"obs": obs}, generator=torch.Generator().manual_seed(seed), num_inference_steps=STEPS
    )["action_pred"]


@pytest.mark.parametrize(
    "build,family,units",
    [
        (
            reference_transformer_policy,
            "transformer-decoder-policy",
            {
                "model.decoder.layers.0.self_attn",
                "model.decoder.layers.0.multihead_attn",
                "model.decoder.layers.0.linear2",
                "model.decoder.layers.1.self_attn",
                "model.decoder.layers.1.multihead_attn",
                "model.decoder.layers.1.linear2",
            },
        ),
        (
            reference_unet_policy,
            "conditional-unet1d",
            {
                "model.down_modules.0.0",
                "model.down_modules.0.1",
                "model.down_modules.1.0",
                "model.down_modules.1.1",
                "model.mid_modules.0",
                "model.mid_modules.1",
                "model.up_modules.0.0",
                "model.up_modules.0.1",
            },
        ),
    ],
)
def test_adapters_attach_to_reference_layouts(build, family, units):
    policy = build()
    assert find_adapter(policy) is None and find_adapter(policy.model).family == family
    reference = _act(policy)
    schedule = diffaccel.bac.calibrate(policy, run=lambda: _act(policy), options={"num_updates": STEPS})
    assert set(schedule.updates) == {u.removeprefix("model.") for u in units}
    diffaccel.wrap(policy, "bac", schedule=schedule)
    assert torch.equal(_act(policy), reference)  # every step updates: bit-identical
    diffaccel.unwrap(policy)

    diffaccel.wrap(policy, "bac", num_updates=3, top_blocks=2)
    _act(policy, seed=1)  # calibration run
    cached = _act(policy, seed=2)
    summary = diffaccel.summary(policy)
    diffaccel.unwrap(policy)
    assert {u.removeprefix("model.") for u in summary.units} == {u.removeprefix("model.") for u in units}
    assert summary.steps == STEPS and summary.computed_fraction < 0.7
    assert torch.isfinite(cached).all() and not torch.equal(cached, _act(policy, seed=2))

    diffaccel.wrap(policy, "taylorseer", interval=2)  # any strategy goes through the same adapter
    _act(policy)
    assert 0.4 < diffaccel.summary(policy).computed_fraction < 0.7
    diffaccel.unwrap(policy)
    diffaccel.wrap(
        policy, "taylorseer", interval=2, warmup=1, granularity="model"
    )  # whole-output reuse of the noise predictor
    _act(policy)
    assert list(diffaccel.engines(policy)) == ["model"] and diffaccel.summary(policy).computed_fraction == 0.5
    diffaccel.unwrap(policy)
    assert torch.equal(_act(policy), reference)
