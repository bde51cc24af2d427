"""Tuned presets (`taylorseer:preset=psnr35`): they parse, resolve per family to the options in the table on
top of the family's own preset, wrap in every form `wrap` accepts, run exactly like the spelled-out spec,
and a bad name is refused with the names that exist."""

import numpy as np
import pytest

import diffaccel
from diffaccel.adapters.registry import find_adapter
from diffaccel.compare.specs import parse_spec
from diffaccel.schedules.calibrate import pipeline_generator
from diffaccel.schedules.presets import TUNED_PRESETS, tuned_preset
from diffaccel.testing.tiny_pipelines import tiny_flux_pipeline, tiny_sd_pipeline

KWARGS = {"prompt": "a photo", "height": 16, "width": 16, "max_sequence_length": 16}


@pytest.fixture(scope="module")
def pipe():
    return tiny_flux_pipeline()


def _config(pipe):
    return diffaccel.api.engines(pipe)["transformer"].strategies[0].config


@pytest.mark.parametrize("name", sorted(TUNED_PRESETS["taylorseer"]))
def test_a_preset_resolves_to_the_family_preset_plus_the_tuned_options(pipe, name):
    family = find_adapter(pipe.transformer)
    expected = {**family.presets["taylorseer"], **TUNED_PRESETS["taylorseer"][name]["flux"]}
    for form in (f"taylorseer:preset={name}", [f"taylorseer:preset={name}"], diffaccel.TaylorSeerConfig(preset=name)):
        diffaccel.wrap(pipe, form)
        try:
            config = _config(pipe)
        finally:
            diffaccel.unwrap(pipe)
        assert config.preset == name
        assert {k: getattr(config, k) for k in expected} == expected, form
    diffaccel.wrap(pipe, "taylorseer", preset=name)
    try:
        assert _config(pipe).preset == name
    finally:
        diffaccel.unwrap(pipe)


def test_options_next_to_a_preset_win(pipe):
    diffaccel.wrap(pipe, "taylorseer:preset=psnr35,order=1,warmup=2")
    try:
        config = _config(pipe)
    finally:
        diffaccel.unwrap(pipe)
    assert (config.order, config.warmup) == (1, 2)
    assert config.granularity == TUNED_PRESETS["taylorseer"]["psnr35"]["flux"]["granularity"]
    # a config object: the fields it sets away from the class defaults win (order=1 IS the default)
    diffaccel.wrap(pipe, diffaccel.TaylorSeerConfig(preset="psnr35", warmup=2, order=1))
    try:
        assert (_config(pipe).warmup, _config(pipe).order) == (
            2,
            TUNED_PRESETS["taylorseer"]["psnr35"]["flux"]["order"],
        )
    finally:
        diffaccel.unwrap(pipe)


def test_a_preset_runs_exactly_like_the_spec_it_stands_for(pipe):
    generate = pipeline_generator(pipe, 10, **KWARGS)
    tuned = TUNED_PRESETS["taylorseer"]["psnr35"]["flux"]
    spelled = "taylorseer:" + ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in tuned.items())
    outputs = []
    for spec in ("taylorseer:preset=psnr35", spelled):
        diffaccel.wrap(pipe, spec)
        try:
            outputs.append((generate(0), diffaccel.summary(pipe).computed_fraction))
        finally:
            diffaccel.unwrap(pipe)
    assert np.array_equal(outputs[0][0], outputs[1][0]) and outputs[0][1] == outputs[1][1] < 1.0


def test_a_family_nobody_tuned_gets_the_fallback_and_a_family_without_a_stack_the_units():
    assert tuned_preset("taylorseer", "psnr30", "no-such-family") == {
        **TUNED_PRESETS["taylorseer"]["psnr30"]["*"],
        **({"granularity": "stack"} if TUNED_PRESETS["taylorseer"]["psnr30"]["*"].get("granularity") else {}),
    }
    sd = tiny_sd_pipeline()  # a UNet: no block stack
    diffaccel.wrap(sd, "taylorseer:preset=psnr35")
    try:
        config = diffaccel.api.engines(sd)["unet"].strategies[0].config
    finally:
        diffaccel.unwrap(sd)
    assert config.preset == "psnr35" and config.granularity == "modules"


@pytest.mark.parametrize("bad", ["taylorseer:preset=psnr99", "hyca:preset=psnr35"])
def test_a_bad_preset_is_refused_with_the_names_that_exist(pipe, bad):
    with pytest.raises(ValueError, match="psnr30|tuned presets exist for: taylorseer"):
        diffaccel.wrap(pipe, bad)
    assert getattr(pipe, "_diffaccel", None) is None
    with pytest.raises(ValueError, match="no tuned preset"):
        parse_spec(bad)


def test_the_spec_parses_to_one_canonical_row():
    assert parse_spec("taylorseer:preset=psnr35").tag == "taylorseer:preset=psnr35"


def test_each_preset_schedule_is_a_growing_gap_schedule_written_out_at_the_tuned_step_count():
    """The lists are what tune chose (growing-G from the family's warm-up): identical at 50 steps, and
    carried by noise-schedule position to other step counts."""
    from diffaccel.forecast.schedules import growing_gap_full_steps
    from diffaccel.schedules.presets import TUNED_STEPS

    warmups = {"flux": 3, "wan": 1, "*": 3}
    for name, table in TUNED_PRESETS["taylorseer"].items():
        for family, options in table.items():
            steps = [int(s) for s in options["schedule"].split("|")]
            assert options["schedule_steps"] == TUNED_STEPS
            assert any(steps == growing_gap_full_steps(TUNED_STEPS, warmups[family], g) for g in range(2, 9)), (
                name,
                family,
            )


def test_a_growing_schedule_written_out_as_a_list_runs_bit_identically(pipe):
    from diffaccel.forecast.schedules import growing_gap_full_steps

    generate = pipeline_generator(pipe, 10, **KWARGS)
    listed = "|".join(map(str, growing_gap_full_steps(10, 3, 3)))
    outputs = []
    for schedule in ("growing-3", f"{listed},schedule_steps=10"):
        diffaccel.wrap(pipe, f"taylorseer:granularity=stack,order=2,guidance_reuse=true,schedule={schedule}")
        try:
            outputs.append(generate(0))
        finally:
            diffaccel.unwrap(pipe)
    assert np.array_equal(outputs[0], outputs[1])
