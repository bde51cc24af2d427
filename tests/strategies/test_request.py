"""`StrategyRequest`: the one reader and writer of `name:key=value,...` strategy specs and `+` compositions."""

from __future__ import annotations

import pytest

import diffaccel
from diffaccel.core.errors import UnknownStrategyError
from diffaccel.strategies.registry import (
    StrategyRequest,
    format_requests,
    get_entry,
    parse_requests,
    strategies,
)


def test_parse_types_values_and_text_round_trips():
    request = StrategyRequest.parse("taylorseer:interval=4,order=2,factor_dtype=model,x=0.5,flag=true")
    assert request.name == "taylorseer"
    assert request.options_dict == {"interval": 4, "order": 2, "factor_dtype": "model", "x": 0.5, "flag": True}
    assert request.text == "taylorseer:interval=4,order=2,factor_dtype=model,x=0.5,flag=true"
    assert StrategyRequest.parse(request.text) == request
    assert request.sorted().text == "taylorseer:factor_dtype=model,flag=true,interval=4,order=2,x=0.5"
    assert StrategyRequest.of("a", {"r": (100, 800)}).text == "a:r=100/800"


def test_compositions_parse_and_format():
    requests = parse_requests("taylorseer:interval=4+taocache")
    assert requests == [StrategyRequest.of("taylorseer", {"interval": 4}), StrategyRequest("taocache")]
    assert format_requests(requests) == "taylorseer:interval=4+taocache"
    with pytest.raises(UnknownStrategyError, match="not of the form key=value"):
        parse_requests("taylorseer:interval")


def test_validate_checks_name_options_and_domain():
    assert StrategyRequest.parse("taylorseer:interval=3").validate(domain="denoiser").name == "taylorseer"
    with pytest.raises(UnknownStrategyError, match="Unknown strategy 'nope'"):
        StrategyRequest("nope").validate()
    with pytest.raises(UnknownStrategyError, match=r"Unknown option\(s\) \['speed'\]"):
        StrategyRequest.parse("taylorseer:speed=2").validate()
    with pytest.raises(UnknownStrategyError, match="bad option value in 'taylorseer:interval=0'"):
        StrategyRequest.parse("taylorseer:interval=0").validate()
    with pytest.raises(UnknownStrategyError, match="'ssd' is a diffusion-language-model strategy"):
        StrategyRequest("ssd").validate(domain="denoiser")


def test_every_strategy_has_a_domain_and_domains_partition_the_registry():
    by_domain = {domain: strategies(domain) for domain in ("denoiser", "dllm", "policy")}
    assert {"taylorseer", "hyca", "taocache"} <= set(by_domain["denoiser"])
    assert {"dkv-cache", "sparsed", "ssd", "fast-dllm"} <= set(by_domain["dllm"])
    assert sorted(n for names in by_domain.values() for n in names) == strategies()
    assert all(get_entry(n).domain == d for d, names in by_domain.items() for n in names)
    with pytest.raises(ValueError, match="unknown strategy domain"):
        strategies("audio")


def test_wrap_takes_a_text_composition_like_a_list():
    from diffaccel.testing.tiny_models import build_tiny

    model = build_tiny("FluxTransformer2DModel")
    diffaccel.wrap(model, "taylorseer:interval=3+taocache")
    engine = diffaccel.engines(model)[""]
    assert [s.config.strategy_name for s in engine.strategies] == ["taylorseer", "taocache"]
    assert engine.strategies[0].config.interval == 3
    diffaccel.unwrap(model)
    diffaccel.wrap(model, [StrategyRequest.of("taylorseer", {"interval": 3}), "taocache"])
    assert diffaccel.engines(model)[""].strategies[0].config.interval == 3
    diffaccel.unwrap(model)
