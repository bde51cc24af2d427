"""Bad input gets a clear error; the public names exist and behave."""

import pytest
import torch

import diffaccel
from diffaccel.testing.tiny_models import build_tiny
from diffaccel.testing.tiny_pipelines import tiny_sd_pipeline

DIT = "DiTTransformer2DModel"


def test_strategies_lists_taylorseer():
    assert "taylorseer" in diffaccel.strategies()


def test_unknown_strategy():
    with pytest.raises(diffaccel.UnknownStrategyError, match="Unknown strategy 'teaseer'.*taylorseer"):
        diffaccel.wrap(build_tiny(DIT), "teaseer")


def test_unknown_option():
    with pytest.raises(diffaccel.UnknownStrategyError, match="intervall.*interval"):
        diffaccel.wrap(build_tiny(DIT), "taylorseer", intervall=3)


@pytest.mark.parametrize(
    "options,match",
    [
        ({"interval": 0}, "interval must be >= 1"),
        ({"interval": -2}, "interval must be >= 1"),
        ({"order": -1}, "order must be >= 0"),
        ({"warmup": 0}, "warmup must be >= 1"),
        ({"factor_dtype": "int8"}, "factor_dtype"),
    ],
)
def test_invalid_option_values(options, match):
    with pytest.raises(ValueError, match=match):
        diffaccel.wrap(build_tiny(DIT), "taylorseer", **options)


@pytest.mark.parametrize("options", [{"interval": "6"}, {"order": 1.5}, {"warmup": True}])
def test_wrong_option_types(options):
    with pytest.raises(TypeError, match="must be an int"):
        diffaccel.wrap(build_tiny(DIT), "taylorseer", **options)


def test_wrong_strategy_type():
    with pytest.raises(TypeError, match="strategy is a name"):
        diffaccel.wrap(build_tiny(DIT), 42)


def test_wrong_object_type():
    with pytest.raises(TypeError, match="pipeline or an nn.Module"):
        diffaccel.wrap("not a model", "taylorseer")


def test_failed_wrap_leaves_the_model_untouched():
    model = build_tiny(DIT)
    with pytest.raises(ValueError):
        diffaccel.wrap(model, "taylorseer", interval=0)
    assert (
        not hasattr(model, "_diffaccel")
        and not getattr(model, "_diffusers_hook", None)
        or not model._diffusers_hook.hooks
    )


def test_wrap_twice_model_and_pipeline():
    model = diffaccel.wrap(build_tiny(DIT), "taylorseer")
    with pytest.raises(diffaccel.AlreadyWrappedError, match="unwrap"):
        diffaccel.wrap(model, "taylorseer")
    pipe = diffaccel.wrap(tiny_sd_pipeline(), "taylorseer")
    with pytest.raises(diffaccel.AlreadyWrappedError):
        diffaccel.wrap(pipe, "taylorseer")
    with pytest.raises(diffaccel.AlreadyWrappedError):  # its UNet alone is wrapped too
        diffaccel.wrap(pipe.unet, "taylorseer")


def test_unwrap_and_summary_of_unwrapped_object():
    with pytest.raises(diffaccel.NotWrappedError):
        diffaccel.unwrap(build_tiny(DIT))
    with pytest.raises(diffaccel.NotWrappedError):
        diffaccel.summary(build_tiny(DIT))


def test_wrap_unwrap_wrap_again():
    model = build_tiny(DIT)
    diffaccel.unwrap(diffaccel.wrap(model, "taylorseer"))
    diffaccel.wrap(model, "taylorseer", interval=2)
    assert diffaccel.engines(model)[""].strategies[0].config.interval == 2


@pytest.mark.parametrize(
    "strategy",
    ["taylorseer", "taocache", ["taylorseer", "taocache"], "taylorseer:granularity=stack", "hyca:granularity=model"],
)
def test_unwrap_leaves_no_wrapper_in_any_forward(strategy):
    """diffusers restores a forward correctly only when hooks go newest first; a stale wrapper left
    behind would keep calling diffaccel (and broke cache-dit's own unpatching after a TaoCache run)."""
    import functools

    model = build_tiny(DIT)
    diffaccel.unwrap(diffaccel.wrap(model, strategy))
    stale = [name for name, m in model.named_modules() if isinstance(vars(m).get("forward"), functools.partial)]
    assert stale == []


def test_config_object_and_options():
    config = diffaccel.TaylorSeerConfig(interval=3, order=2, warmup=1)
    model = diffaccel.wrap(build_tiny(DIT), config, warmup=2)
    cfg = diffaccel.engines(model)[""].strategies[0].config
    assert (cfg.interval, cfg.order, cfg.warmup) == (3, 2, 2)


def test_composition_with_options_is_rejected():
    with pytest.raises(diffaccel.UnknownStrategyError, match="config objects"):
        diffaccel.wrap(build_tiny(DIT), ["taylorseer", "taylorseer"], interval=3)


def test_same_units_twice_is_rejected():
    with pytest.raises(ValueError, match="cache unit of both"):
        diffaccel.wrap(build_tiny(DIT), ["taylorseer", diffaccel.TaylorSeerConfig(interval=2)])


def test_parse_strategy_spec():
    assert diffaccel.parse_strategy_spec("taylorseer:interval=4,order=2,factor_dtype=model") == (
        "taylorseer",
        {"interval": 4, "order": 2, "factor_dtype": "model"},
    )
    assert diffaccel.parse_strategy_spec("taylorseer") == ("taylorseer", {})
    with pytest.raises(diffaccel.UnknownStrategyError, match="key=value"):
        diffaccel.parse_strategy_spec("taylorseer:interval")


def test_force_last_full_without_step_count_says_how():
    model = diffaccel.wrap(build_tiny(DIT), "taylorseer", interval=4, warmup=1, force_last_full=1)
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        model(hidden_states=x, timestep=torch.tensor([999]), class_labels=torch.tensor([1]))
        with pytest.raises(RuntimeError, match="num_inference_steps"):
            model(hidden_states=x, timestep=torch.tensor([990]), class_labels=torch.tensor([1]))


def test_register_adapter_for_a_custom_module():
    class MyDenoiser(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(2))

        def forward(self, x, timestep):
            for layer in self.layers:
                x = x + layer(x)
            return x

    diffaccel.register_adapter(
        diffaccel.Adapter("my-denoiser", ("MyDenoiser",), (diffaccel.UnitSpec(r"layers\.\d+", "mlp"),)), replace=True
    )
    assert "MyDenoiser" in diffaccel.supported_classes()
    model = MyDenoiser()
    x = torch.randn(2, 4)
    reference = [model(x, torch.tensor(t)) for t in (3.0, 2.0, 1.0)]
    diffaccel.wrap(model, "taylorseer", interval=1)
    assert all(torch.equal(a, model(x, torch.tensor(t))) for a, t in zip(reference, (3.0, 2.0, 1.0)))


def test_text_specs_alone_and_in_compositions():
    model = diffaccel.wrap(build_tiny(DIT), "taylorseer:interval=3,order=2", warmup=1)
    cfg = diffaccel.engines(model)[""].strategies[0].config
    assert (cfg.interval, cfg.order, cfg.warmup) == (3, 2, 1)
    model = diffaccel.wrap(build_tiny(DIT), ["taylorseer:interval=3", "taocache:max_skips=1"])
    ts, tao = diffaccel.engines(model)[""].strategies
    assert (ts.config.interval, ts.config.order, ts.config.warmup) == (3, 4, 2)  # DiT preset + option
    assert tao.config.max_skips == 1
