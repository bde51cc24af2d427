"""dLLM strategies through the shared engine: diffaccel.wrap / unwrap / summary."""

import pytest
import torch

import diffaccel
from diffaccel.core.errors import AlreadyWrappedError, NotWrappedError, RunStateError, UnknownStrategyError
from diffaccel.dllm import LLaDAPipeline, dllm_strategies
from diffaccel.dllm.dkv_cache import DKVCacheConfig

from .conftest import random_prompts, tiny_llada

RUN = dict(gen_length=16, steps=16, block_length=8)


def test_every_strategy_wraps_reports_and_unwraps_to_identical_outputs():
    pipe, ids = LLaDAPipeline(tiny_llada(2)), random_prompts(3, 9, 12)
    plain = pipe(input_ids=ids, **RUN).sequences
    assert set(dllm_strategies()) <= set(diffaccel.strategies())
    for name, options in [("dkv-cache", {"refresh_interval": 1}), ("ssd", {"draft_length": 3}),
                          ("ssd", {"adaptive": True}),
                          ("sparsed", {"skip": 1.0, "block_size": 8, "compile": False}),
                          ("fast-dllm", {"threshold": 2.0, "cache": "none"})]:
        diffaccel.wrap(pipe, name, **options)
        pipe(input_ids=ids[:1], **RUN)  # a run with another batch size first: each call is its own run
        out = pipe(input_ids=ids, **RUN)
        stats = diffaccel.summary(pipe)
        # each setting is lossless by construction (refresh every step / SSD / no sparse step /
        # a threshold that is never reached)
        assert torch.equal(out.sequences, plain), name
        assert stats.extra["committed_tokens"] == 3 * 16 and stats.strategy.startswith(name)
        assert stats.extra["forwards"] == out.record.forward_calls
        assert stats.as_dict()["forwards"] == out.record.forward_calls
        diffaccel.unwrap(pipe)
        assert torch.equal(pipe(input_ids=ids, **RUN).sequences, plain)


def test_summary_reports_what_a_cache_saved():
    pipe, ids = LLaDAPipeline(tiny_llada(2)), random_prompts(1, 9, 12)
    diffaccel.wrap(pipe, DKVCacheConfig(refresh_interval=4))
    try:
        pipe(input_ids=ids, **RUN)
        stats = diffaccel.summary(pipe)
    finally:
        diffaccel.unwrap(pipe)
    # per block of 8 steps: full forwards at i = 0, 1, 4; cached at 2, 3, 5, 6, 7
    assert stats.full_steps == 6 and stats.extra["cached_forwards"] == 10
    assert stats.steps == 16 and 0 < stats.computed_fraction < 1 and stats.cache_bytes > 0
    assert "dkv-cache" in str(stats)


def test_ssd_reports_fewer_forwards_than_steps():
    pipe, ids = LLaDAPipeline(tiny_llada(2)), random_prompts(4, 9, 12)
    diffaccel.dllm.wrap(pipe, "ssd:draft_length=4")
    try:
        pipe(input_ids=ids, **RUN)
        stats = diffaccel.summary(pipe)
    finally:
        diffaccel.unwrap(pipe)
    assert stats.extra["forwards"] < 16 and stats.extra["mean_tokens_per_round"] > 1
    assert "ssd-verify" in stats.contexts


def test_fast_dllm_threshold_zero_decodes_each_block_in_one_step():
    pipe, ids = LLaDAPipeline(tiny_llada(2)), random_prompts(2, 9, 12)
    diffaccel.dllm.wrap(pipe, "fast-dllm:threshold=0.0,cache=prefix")
    try:
        out = pipe(input_ids=ids, **RUN)
    finally:
        diffaccel.unwrap(pipe)
    assert out.record.forward_calls == 2  # two blocks, one step each
    assert pipe.sampling_overrides == {}


def test_bad_input_gets_clear_errors():
    pipe = LLaDAPipeline(tiny_llada(1))
    with pytest.raises(UnknownStrategyError, match="Unknown strategy"):
        diffaccel.dllm.wrap(pipe, "taylorseer-for-text")
    with pytest.raises(UnknownStrategyError, match="not a diffusion-LM strategy"):
        diffaccel.dllm.wrap(pipe, "taylorseer")
    with pytest.raises(UnknownStrategyError, match="Unknown option"):
        diffaccel.wrap(pipe, "dkv-cache", refresh=3)
    with pytest.raises(ValueError, match="refresh_interval"):
        diffaccel.wrap(pipe, "dkv-cache", refresh_interval=0)
    with pytest.raises(NotWrappedError):
        diffaccel.summary(pipe)
    diffaccel.wrap(pipe, "ssd")
    with pytest.raises(AlreadyWrappedError):
        diffaccel.wrap(pipe, "dkv-cache")
    diffaccel.unwrap(pipe)
    with pytest.raises(TypeError, match="needs a diffaccel dLLM pipeline"):
        diffaccel.wrap(tiny_llada(1), "ssd")


def test_a_bare_model_reports_a_changed_batch_within_a_run():
    model = tiny_llada(1)
    diffaccel.wrap(model, "dkv-cache")
    try:
        diffaccel.new_run(model)
        model(random_prompts(2, 5, 12))
        with pytest.raises(RunStateError, match="changed within a run"):
            model(random_prompts(3, 5, 12))
    finally:
        diffaccel.unwrap(model)
