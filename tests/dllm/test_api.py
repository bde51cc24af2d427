"""wrap / unwrap / summary for dLLM pipelines."""

import pytest
import torch

from diffaccel.core.errors import AlreadyWrappedError, NotWrappedError, UnknownStrategyError
from diffaccel.dllm import LLaDAPipeline, dllm_strategies, summary, unwrap, wrap
from diffaccel.dllm.dkv_cache import DKVCacheConfig

from .conftest import random_prompts, tiny_llada

RUN = dict(gen_length=16, steps=16, block_length=8)


def test_every_strategy_wraps_reports_and_unwraps_to_identical_outputs():
    pipe, ids = LLaDAPipeline(tiny_llada(2)), random_prompts(2, 9, 12)
    plain = pipe(input_ids=ids, **RUN).sequences
    assert dllm_strategies() == ["dkv-cache", "fast-dllm", "sparsed", "ssd"]
    for name, options in [("dkv-cache", {"refresh_interval": 1}), ("ssd", {"draft_length": 3}),
                          ("sparsed", {"skip": 1.0, "block_size": 8, "compile": False}),
                          ("fast-dllm", {"threshold": 2.0, "cache": "none"})]:
        wrap(pipe, name, **options)
        out = pipe(input_ids=ids, **RUN)
        stats = summary(pipe)
        # each of these settings is lossless by construction (refresh every step / SSD / no sparse
        # step / a threshold that is never reached)
        assert torch.equal(out.sequences, plain), name
        assert stats.committed_tokens == 2 * 16 and stats.strategy.startswith(name)
        assert stats.as_dict()["nfe"] == out.record.forward_calls
        unwrap(pipe)
        assert torch.equal(pipe(input_ids=ids, **RUN).sequences, plain)


def test_fast_dllm_threshold_zero_decodes_each_block_in_one_step():
    pipe, ids = LLaDAPipeline(tiny_llada(2)), random_prompts(2, 9, 12)
    wrap(pipe, "fast-dllm:threshold=0.0,cache=prefix")
    try:
        out = pipe(input_ids=ids, **RUN)
        assert out.record.forward_calls == 2  # two blocks, one step each
    finally:
        unwrap(pipe)


def test_summary_reports_what_a_cache_saved():
    pipe, ids = LLaDAPipeline(tiny_llada(2)), random_prompts(1, 9, 12)
    wrap(pipe, DKVCacheConfig(refresh_interval=4))
    try:
        pipe(input_ids=ids, **RUN)
        stats = summary(pipe)
    finally:
        unwrap(pipe)
    # per block of 8 steps: full at i = 0, 1, 4; cached at 2, 3, 5, 6, 7
    assert stats.full_steps == 6 and stats.extra["cached_forwards"] == 10
    assert stats.nfe == 16 and 0 < stats.computed_fraction < 1 and stats.cache_bytes > 0
    assert "dkv-cache" in str(stats)


def test_bad_input_gets_clear_errors():
    pipe = LLaDAPipeline(tiny_llada(1))
    with pytest.raises(UnknownStrategyError, match="Unknown dLLM strategy"):
        wrap(pipe, "taylorseer-for-text")
    with pytest.raises(UnknownStrategyError, match="Unknown option"):
        wrap(pipe, "dkv-cache", refresh=3)
    with pytest.raises(ValueError, match="refresh_interval"):
        wrap(pipe, "dkv-cache", refresh_interval=0)
    with pytest.raises(NotWrappedError):
        summary(pipe)
    wrap(pipe, "ssd")
    with pytest.raises(AlreadyWrappedError):
        wrap(pipe, "dkv-cache")
    unwrap(pipe)
    with pytest.raises(NotWrappedError):
        unwrap(pipe)
    with pytest.raises(TypeError, match="not a diffaccel dLLM pipeline"):
        wrap(object(), "ssd")
