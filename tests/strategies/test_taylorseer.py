"""TaylorSeer on a real FLUX transformer: the preset's full steps over 50 steps are exactly the
official ones, derived here by re-running the official skip counter."""

import torch

import diffaccel
from diffaccel.testing.tiny_models import at_step, build_tiny, tiny_inputs
from tests.forecast.test_schedules import official_counter_schedule

FLUX = "FluxTransformer2DModel"


def test_flux_preset_computes_the_official_full_steps_over_50():
    model = diffaccel.wrap(build_tiny(FLUX), "taylorseer")
    executed = []
    step = {"n": -1}
    # which linear layers really ran, seen below the module level (torch's own module hooks would
    # fire for a forecast module too, since the forecast replaces its forward)
    probes = [
        model.transformer_blocks[0].attn.to_q,
        model.transformer_blocks[1].ff.net[2],
        model.single_transformer_blocks[1].attn.to_q,
        model.single_transformer_blocks[0].proj_mlp,
        model.single_transformer_blocks[0].proj_out,
    ]
    weights = {id(p.weight): i for i, p in enumerate(probes)}

    class LinearLog(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.nn.functional.linear and id(args[1]) in weights:
                executed.append((weights[id(args[1])], step["n"]))
            return func(*args, **(kwargs or {}))

    inputs = tiny_inputs(FLUX)
    with torch.no_grad(), LinearLog():
        for n in range(50):
            step["n"] = n
            model(**at_step(FLUX, inputs, n, 50))
    official = official_counter_schedule(50, interval=6, first_enhance=3)
    assert len(official) == 10
    for i in range(len(probes)):
        assert [n for j, n in executed if j == i] == official
    stats = diffaccel.summary(model)
    assert (stats.steps, stats.full_steps) == (50, 10)
    # every cache unit costs the same at every step, so the FLOP-weighted fraction is the step ratio
    assert abs(stats.computed_fraction - 10 / 50) < 1e-12
