"""dLLM strategies through the shared engine: diffaccel.wrap / unwrap / summary."""

import pytest
import torch

import diffaccel
from diffaccel.core.errors import AlreadyWrappedError, NotWrappedError, UnknownStrategyError
from diffaccel.dllm import LLaDAPipeline, dllm_strategies
from diffaccel.dllm.dkv_cache import DKVCacheConfig
from diffaccel.dllm.sampler import DecodeStep, MaskedDiffusionSampler, SamplingConfig
from diffaccel.dllm.ssd import SelfSpeculativeDecoding, SSDConfig

from .conftest import random_prompts, tiny_llada

RUN = dict(gen_length=16, steps=16, block_length=8)


def test_every_strategy_wraps_reports_and_unwraps_to_identical_outputs():
    pipe, ids = LLaDAPipeline(tiny_llada(2)), random_prompts(3, 9, 12)
    plain = pipe(input_ids=ids, **RUN).sequences
    assert set(dllm_strategies()) <= set(diffaccel.strategies())
    for name, options in [
        ("dkv-cache", {"refresh_interval": 1}),
        ("ssd", {"draft_length": 3}),
        ("ssd", {"adaptive": True}),
        ("sparsed", {"skip": 1.0, "block_size": 8, "compile": False}),
        ("fast-dllm", {"threshold": None, "cache": "none"}),
    ]:
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
    assert stats.contexts == ["default"]


def test_ssd_verification_batches_are_exactly_as_large_as_needed():
    """Under the engine SSD runs the same forwards as the bare policy: no padded rows."""
    model, ids = tiny_llada(2), random_prompts(4, 9, 12)
    rows = []
    handle = model.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    try:
        sampler = MaskedDiffusionSampler(model, family="llada", mask_id=model.config.mask_token_id)
        sampler.generate(ids, SamplingConfig(**RUN), policy=SelfSpeculativeDecoding(SSDConfig(draft_length=4)))
        bare_rows, bare_record = list(rows), sampler.last_record
        rows.clear()
        pipe = LLaDAPipeline(model)
        diffaccel.wrap(pipe, "ssd", draft_length=4)
        try:
            out = pipe(input_ids=ids, **RUN)
        finally:
            diffaccel.unwrap(pipe)
    finally:
        handle.remove()
    assert rows == bare_rows and sum(rows) == out.record.forward_rows == bare_record.forward_rows
    assert max(rows) <= 4 * (4 + 1) and len(set(rows)) > 2  # batch sizes vary from forward to forward


@pytest.mark.parametrize(
    "spec, forwards",
    [
        ("fast-dllm:threshold=0.000001,cache=prefix", 4),
        ("fast-dllm:threshold=0.000001,cache=prefix,skip_idle_forward=True", 2),
    ],
)
def test_fast_dllm_threshold_zero_decodes_each_block_in_one_step(spec, forwards):
    """Every block is decoded by its first forward; the official loop runs one more (idle) forward per
    block, which our ``skip_idle_forward`` saves."""
    pipe, ids = LLaDAPipeline(tiny_llada(2)), random_prompts(2, 9, 12)
    diffaccel.dllm.wrap(pipe, spec)
    try:
        out = pipe(input_ids=ids, **RUN)
    finally:
        diffaccel.unwrap(pipe)
    assert out.record.forward_calls == forwards
    assert out.record.steps == 2  # one committing step per block (idle forwards commit nothing)
    assert pipe.sampling_overrides == {}


def test_bad_input_gets_clear_errors():
    pipe = LLaDAPipeline(tiny_llada(1))
    with pytest.raises(UnknownStrategyError, match="Unknown strategy"):
        diffaccel.dllm.wrap(pipe, "taylorseer-for-text")
    with pytest.raises(UnknownStrategyError, match="not a diffusion-language-model strategy"):
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


def test_a_bare_model_with_a_changed_batch_within_a_run_recomputes_instead_of_reusing_the_cache():
    """dLLM strategies opt out of the engine's fixed-shape check because their caches reset themselves."""
    model = tiny_llada(1)
    x2, x3 = random_prompts(2, 6, 12), random_prompts(3, 6, 12, seed=5)
    x2[:, 3:] = x3[:, 3:] = model.config.mask_token_id
    step = dict(
        run_id=-7,
        total_steps=6,
        block_index=0,
        block_start=3,
        block_end=6,
        prompt_length=3,
        gen_length=3,
        mask_id=model.config.mask_token_id,
    )
    expected = model(x3).logits
    diffaccel.wrap(model, "dkv-cache", refresh_interval=8)
    try:
        diffaccel.new_run(model)
        for i in range(3):
            model(x2, decode_step=DecodeStep(index=i, step_in_block=i, **step))
        got = model(x3, decode_step=DecodeStep(index=3, step_in_block=3, **step))
    finally:
        diffaccel.unwrap(model)
    assert torch.equal(got.logits, expected) and got.computed_tokens == x3.numel()
