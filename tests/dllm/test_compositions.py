"""Compositions of dLLM strategies in one wrap: which are exact, and against which reference."""

import pytest
import torch

import diffaccel
from diffaccel.dllm import LLaDAPipeline
from diffaccel.dllm.fast_dllm import FastDLLMConfig
from diffaccel.dllm.sparse_patterns import dense_mask_from_pattern
from diffaccel.dllm.sparsed import rows_mask

from .conftest import random_prompts, tiny_llada

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without")

RUN = dict(gen_length=16, steps=16, block_length=8)
SPARSED = "sparsed:skip=0.25,select=0.4,block_size=8,compile=False"


def _run(pipe, ids, strategies, run=RUN):
    """Tokens, summary and the logits of every forward of one wrapped call."""
    logits = []
    handle = pipe.model.register_forward_hook(lambda module, args, out: logits.append(out.logits))
    diffaccel.wrap(pipe, strategies)
    try:
        out = pipe(input_ids=ids, **run)
        return out.sequences, diffaccel.summary(pipe), logits
    finally:
        diffaccel.unwrap(pipe)
        handle.remove()


@pytest.mark.parametrize("order", [0, 1])
def test_sparsed_under_a_cache_refreshing_every_step_equals_sparsed_alone(order):
    """Every forward is a full one, so SparseD's kernel sees exactly what it sees alone: equal logits at
    every forward, bit for bit."""
    pipe, ids = LLaDAPipeline(tiny_llada(2)), random_prompts(2, 24, 12)
    alone, alone_stats, alone_logits = _run(pipe, ids, [SPARSED])
    parts = [SPARSED, "dkv-cache:refresh_interval=1"]
    both, stats, both_logits = _run(pipe, ids, parts[::-1] if order else parts)
    assert torch.equal(both, alone)
    assert len(both_logits) == len(alone_logits) == 16
    # under the cache the sampler asks for the current block's logits only (8 steps per 8-token block)
    starts = [24 + 8 * (i // 8) for i in range(16)]
    assert all(b.shape[1] == 8 for b in both_logits)
    assert all(torch.equal(a[:, s : s + 8], b) for a, b, s in zip(alone_logits, both_logits, starts))
    _, _, dense_logits = _run(pipe, ids, ["dkv-cache:refresh_interval=1"])
    assert not torch.equal(dense_logits[-1], alone_logits[-1])  # the pattern changes this run: the test can fail
    sparse = stats.extra["savings"]["sparsed"]
    assert sparse["sparse_calls"] == alone_stats.extra["savings"]["sparsed"]["sparse_calls"] > 0
    assert sparse["attention_pairs_excluded_fraction"] > 0


def test_sparsed_keeping_every_block_under_dkv_cache_equals_dkv_cache_alone():
    pipe, ids = LLaDAPipeline(tiny_llada(2)), random_prompts(2, 24, 12)
    alone, _, alone_logits = _run(pipe, ids, ["dkv-cache:refresh_interval=4"])
    both, stats, both_logits = _run(
        pipe, ids, ["dkv-cache:refresh_interval=4", SPARSED.replace("select=0.4", "select=1.0")]
    )
    assert torch.equal(both, alone)
    # the same attention through other kernels (FlexAttention, a masked SDPA): equal up to rounding (float64)
    assert len(both_logits) == len(alone_logits)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-9) for a, b in zip(alone_logits, both_logits))
    assert stats.extra["savings"]["sparsed"]["masked_calls"] > 0  # the cached forwards went through SparseD


def test_cached_rows_attend_exactly_to_their_query_blocks_kept_keys():
    """The mask of a cached forward (some query rows, keys in cache order) is the full pattern's mask at
    those rows and keys."""
    torch.manual_seed(0)
    batch, heads, length, bs = 2, 3, 21, 4
    pattern = torch.rand(batch, heads, 6, 6) < 0.5
    positions = torch.stack([torch.randperm(length)[:7].sort().values for _ in range(batch)])
    key_positions = torch.stack([torch.randperm(length) for _ in range(batch)])
    full = dense_mask_from_pattern(pattern, length, length, bs)
    expected = torch.stack([full[b][:, positions[b]][:, :, key_positions[b]] for b in range(batch)])
    assert torch.equal(rows_mask(pattern, positions, key_positions, bs), expected)


def test_summary_attributes_savings_to_each_part():
    pipe, ids = LLaDAPipeline(tiny_llada(2)), random_prompts(2, 24, 12)
    _, stats, _ = _run(pipe, ids, [SPARSED, "dkv-cache:refresh_interval=4"])
    savings = stats.extra["savings"]
    assert set(savings) == {"sparsed", "dkv-cache"}
    cache, sparse = savings["dkv-cache"], savings["sparsed"]
    assert cache["cached_forwards"] > 0 and 0 < cache["tokens_not_run_fraction"] < 1
    assert cache["tokens_not_run"] == 2 * 40 * stats.extra["forwards"] - stats.extra["query_tokens"]
    assert sparse["masked_calls"] > 0 and sparse["sparse_calls"] > 0
    assert 0 < sparse["attention_pairs_skipped_fraction"] < sparse["attention_pairs_excluded_fraction"] < 1


def _stepwise_and_ssd(pipe, ids, cache, run, ssd="ssd:draft_length=3"):
    reference = FastDLLMConfig(threshold=None, cache=cache)
    expected, ref_stats, _ = _run(pipe, ids, [reference], run)
    got, stats, _ = _run(pipe, ids, [ssd, reference], run)
    return expected, ref_stats, got, stats


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_ssd_with_a_block_cache_equals_stepwise_decoding_with_that_cache(cache):
    """Lossless composition: the verification batch serves each node as the cache would at that state."""
    pipe, ids = LLaDAPipeline(tiny_llada(2, seed=4)), random_prompts(3, 9, 12)
    run = dict(gen_length=16, steps=16, block_length=4)
    expected, ref_stats, got, stats = _stepwise_and_ssd(pipe, ids, cache, run)
    assert torch.equal(got, expected)
    ssd, part = stats.extra["savings"]["ssd"], stats.extra["savings"]["fast-dllm"]
    assert ssd["stepwise_forwards"] == 16 and ssd["forwards"] < 16 and ssd["forwards_saved"] == 16 - ssd["forwards"]
    assert part["cached_forwards"] > 0 and part["tokens_not_run_fraction"] > 0
    # the cache changes this model's tokens (it is approximate), so the equality above is a real check
    plain, _, _ = _run(pipe, ids, [FastDLLMConfig(threshold=None, cache="none")], run)
    assert not torch.equal(plain, expected)


def test_ssd_with_the_dual_cache_is_exact_on_the_trained_model(zoo_pipe):
    ids, _ = zoo_pipe.task.held_out(32, seed=7)
    g = zoo_pipe.task.gen_length
    expected, _, got, stats = _stepwise_and_ssd(zoo_pipe, ids, "dual", dict(gen_length=g, steps=g, block_length=g))
    assert torch.equal(got, expected)
    assert stats.extra["savings"]["ssd"]["forwards"] < g


@pytest.mark.parametrize(
    "other, why",
    [
        ("dkv-cache", "dkv-cache refreshes by step count"),
        ("sparsed", "ssd verifies with dense attention"),
        ("fast-dllm:threshold=0.9", "commits several tokens per step"),
    ],
)
def test_unsupported_compositions_are_refused_at_wrap_naming_what_works(other, why):
    pipe = LLaDAPipeline(tiny_llada(1))
    with pytest.raises(ValueError, match=why) as info:
        diffaccel.wrap(pipe, ["ssd", other])
    assert "FastDLLMConfig(threshold=None, cache='prefix' or 'dual')" in str(info.value)
    assert getattr(pipe, "_diffaccel", None) is None
    assert pipe.block_policy is None
