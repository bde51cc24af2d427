"""`diffaccel.tune` on a tiny pipeline: its choice meets the target on the validation seeds (re-measured
here independently of tune's own bookkeeping), and an unreachable target is reported, not guessed."""

import numpy as np
import pytest

import diffaccel
from diffaccel import metrics
from diffaccel.schedules.calibrate import pipeline_generator
from diffaccel.testing.tiny_pipelines import tiny_flux_pipeline

KWARGS = {"prompt": "a photo", "height": 16, "width": 16, "max_sequence_length": 16}
STEPS = 10


@pytest.fixture(scope="module")
def pipe():
    return tiny_flux_pipeline()


def test_tune_returns_a_spec_that_meets_its_target_on_the_validation_seeds(pipe, tmp_path):
    generate = pipeline_generator(pipe, STEPS, **KWARGS)
    candidates = [
        "taylorseer:interval=2",
        "taylorseer:interval=5,granularity=stack",
        "taylorseer:schedule=growing,granularity=stack",
        "taylorseer:schedule=adaptive,threshold=0.2",
    ]
    result = diffaccel.tune(
        pipe,
        target_psnr=30,
        generate=generate,
        num_inference_steps=STEPS,
        candidates=candidates,
        calibration_seeds=(0,),
        validation_seeds=(1, 2),
        save_dir=tmp_path,
        progress=False,
    )
    assert result.ok, result.message
    assert getattr(pipe, "_diffaccel", None) is None  # tune leaves the pipeline unwrapped
    assert len(result.table) == 4 and all(row["cal_psnr"] is not None for row in result.table)
    assert {"computed_fraction", "cpu_s", "cal_ssim"} <= set(result.table[0])
    # independent check: wrap with the text spec and score the validation seeds against full-step runs
    references = {seed: generate(seed) for seed in (1, 2)}
    diffaccel.wrap(pipe, result.spec)
    try:
        scores = [
            metrics.psnr(references[seed][i], out[i])
            for seed in (1, 2)
            for out in [generate(seed)]
            for i in range(len(out))
        ]
        fraction = diffaccel.summary(pipe).computed_fraction
    finally:
        diffaccel.unwrap(pipe)
    assert np.mean(np.minimum(scores, 100.0)) >= 30
    assert fraction < 1.0  # something was skipped
    assert result.chosen["val_psnr"] == pytest.approx(np.mean(np.minimum(scores, 100.0)), rel=1e-6)


def test_an_unreachable_target_says_so(pipe, tmp_path):
    generate = pipeline_generator(pipe, STEPS, **KWARGS)
    result = diffaccel.tune(
        pipe,
        target_psnr=1e6,
        generate=generate,
        num_inference_steps=STEPS,
        candidates=["taylorseer:interval=3", "taylorseer:schedule=growing"],
        save_dir=tmp_path,
        progress=False,
    )
    assert not result.ok and result.spec is None
    assert "no candidate met" in result.message and "lower the target" in result.message
    assert [row["spec"] for row in result.table] == ["taylorseer:interval=3", "taylorseer:schedule=growing"]


def test_seed_sets_must_differ(pipe):
    with pytest.raises(ValueError, match="must differ"):
        diffaccel.tune(pipe, calibration_seeds=(0,), validation_seeds=(0, 1))


def test_the_search_space_holds_valid_specs_for_every_granularity(pipe, tmp_path):
    from diffaccel.schedules.calibrated import CalibratedSchedule
    from diffaccel.tune import _search_space

    class _Bar:
        def set_description(self, text):
            pass

    runs = []

    def fake_calibrate_orders(obj, generate, steps, seeds, granularity, orders, warmup, num_full, guidance, outputs):
        runs.append((granularity, tuple(orders)))
        return {
            order: CalibratedSchedule(
                "FluxTransformer2DModel",
                steps,
                None,
                [1000.0 - 20 * n for n in range(steps)],
                list(range(num_full)),
                [[0.0] * steps] * steps,
                {"warmup": 1, "order": order},
            )
            for order in orders
        }

    specs = _search_space(
        pipe,
        ("taylorseer", "hyca"),
        50,
        fake_calibrate_orders,
        None,
        (0,),
        None,
        tmp_path,
        _Bar(),
        ("stack", "modules"),
    )
    assert runs == [("stack", (1, 2)), ("modules", (1, 2))]  # one calibration run per granularity, all orders
    granularities = {spec.split("granularity=")[1].split(",")[0] for spec in specs}
    assert granularities == {"stack", "modules"}
    assert any("schedule=adaptive" in s for s in specs) and any("schedule=growing-3" in s for s in specs)
    assert any("schedule_steps=50" in s for s in specs)  # calibrated schedules travel as step lists
    for spec in specs:  # every spec wraps and unwraps
        diffaccel.unwrap(diffaccel.wrap(pipe, spec))
    # by default: the stack only, where the adapter names one
    runs.clear()
    default = _search_space(pipe, ("taylorseer",), 50, fake_calibrate_orders, None, (0,), None, None, _Bar())
    assert runs == [("stack", (1, 2))] and all("granularity=stack" in s for s in default)


def test_the_margin_refuses_a_choice_that_only_just_meets_the_target(pipe):
    generate = pipeline_generator(pipe, STEPS, **KWARGS)
    spec = "taylorseer:interval=5,granularity=stack"
    common = dict(
        generate=generate, num_inference_steps=STEPS, candidates=[spec], validation_seeds=(1, 2), progress=False
    )
    plain = diffaccel.tune(pipe, target_psnr=0, margin_db=0, **common)
    mean, worst = plain.chosen["val_psnr"], plain.chosen["val_worst_psnr"]
    target = min(worst, plain.chosen["cal_psnr"]) - 0.01  # met by every seed
    assert diffaccel.tune(pipe, target_psnr=target, margin_db=0, **common).ok
    refused = diffaccel.tune(pipe, target_psnr=target, margin_db=mean - target + 0.1, **common)
    assert not refused.ok and "margin" in refused.message
    with pytest.raises(ValueError, match="margin_db"):
        diffaccel.tune(pipe, target_psnr=30, margin_db=-1, **common)


def test_the_cli_target_form():
    from diffaccel.tune import parse_target

    assert parse_target("psnr=35") == 35.0
    with pytest.raises(ValueError, match="psnr="):
        parse_target("ssim=0.9")
