"""Forwards asked for a ``logits_range`` (ours): the same logits as the full forward at those positions, and the
same tokens wherever the sampler asks for them (the K/V caches, SSD, ``LLaDA2Pipeline``'s step hook)."""

import pytest
import torch

import diffaccel
from diffaccel.dllm import DreamPipeline, LLaDAPipeline, dkv_cache, fast_dllm
from diffaccel.dllm.kv_cache import attach_planner, detach_planner
from diffaccel.dllm.sampler import Block, DecodeRecord, DecodeRun, MaskedDiffusionSampler, SamplingConfig
from diffaccel.dllm.ssd import SelfSpeculativeDecoding, SSDConfig

from .conftest import DREAM_MASK, LLADA_MASK, random_prompts, tiny_dream, tiny_llada

WINDOWS = [(0, 20), (3, 5), (5, 6), (19, 20), (0, 1), (8, 20), (12, 17)]
#: fewer rows in a matrix product may round differently in the last bits on some CPUs (measured on an AVX-512
#: AMD EPYC with torch 2.13, logits of magnitude up to 16: Dream's windows 5.3e-15 below, LLaDA's 0; the cached
#: runs up to 6.2e-15 for both; bit-identical on the CPUs CI ran on before)
FLOAT64_ROUNDING = {"rtol": 1e-13, "atol": 1e-13}


@pytest.mark.parametrize("family", ["llada", "llada-gqa", "dream"])
def test_a_window_forward_equals_the_full_forward_sliced_in_float64(family):
    """The last block runs only the window's queries and the head only its rows: per-row operations on the
    same keys and values. Equal to float64 rounding, and bit for bit where the CPU's matrix kernels round a row
    independently of how many rows share the call (the CPUs CI ran on before; on an AVX-512 EPYC Dream's differ:
    ``FLOAT64_ROUNDING``); the tokens the sampler reads from them are the same (the cached-run test below)."""
    model = {"llada": lambda: tiny_llada(3), "llada-gqa": lambda: tiny_llada(2, n_kv_heads=2), "dream": tiny_dream}[
        family
    ]()
    x = random_prompts(3, 20, 12)
    with torch.no_grad():
        full = model(x).logits
        for lo, hi in WINDOWS:
            got = model(x, logits_range=(lo, hi)).logits
            assert got.shape == (3, hi - lo, full.shape[-1])
            torch.testing.assert_close(got, full[:, lo:hi], **FLOAT64_ROUNDING, msg=str((lo, hi)))


def test_a_window_forward_in_float32_equals_the_full_forward_to_rounding():
    """float32 matrix products may take another kernel for fewer rows, so only rounding may differ."""
    model, x = tiny_llada(2, dtype=torch.float32), random_prompts(4, 20, 12)
    with torch.no_grad():
        full = model(x).logits
        for lo, hi in WINDOWS:
            torch.testing.assert_close(model(x, logits_range=(lo, hi)).logits, full[:, lo:hi], atol=1e-5, rtol=1e-5)


def test_a_window_outside_the_input_is_refused():
    model, x = tiny_llada(1), random_prompts(1, 6, 12)
    for bad in [(4, 4), (-1, 3), (2, 7), (5, 2)]:
        with pytest.raises(ValueError, match="logits_range"):
            model(x, logits_range=bad)


PLANNERS = {
    "decode-R3": lambda: dkv_cache.make_planner(dkv_cache.DKVCacheConfig(refresh_interval=3)),
    "prefix": lambda: fast_dllm.make_planner(fast_dllm.FastDLLMConfig(cache="prefix")),
    "dual": lambda: fast_dllm.make_planner(fast_dllm.FastDLLMConfig(cache="dual")),
}


def _cached_run(model, family, prompts, planner, window):
    """Tokens and, per forward, (logits_range asked, logits) of a stepwise run under ``planner``."""
    mask = LLADA_MASK if family == "llada" else DREAM_MASK
    sampler = MaskedDiffusionSampler(model, family=family, mask_id=mask)
    sampler.logits_window = window
    calls = []
    handle = model.register_forward_hook(
        lambda m, args, kwargs, out: calls.append((kwargs.get("logits_range"), out.logits)), with_kwargs=True
    )
    attach_planner(model, planner)
    try:
        config = SamplingConfig(gen_length=16, steps=16, block_length=8, alg="maskgit_plus")
        return sampler.generate(prompts, config), calls
    finally:
        detach_planner(model)
        handle.remove()


@pytest.mark.parametrize("family", ["llada", "dream"])
@pytest.mark.parametrize("planner", list(PLANNERS))
def test_cached_forwards_asked_for_the_block_give_the_full_length_cached_logits_there(family, planner):
    """Under every cache (dKV-Cache's rows run different positions: the scattered path) a windowed forward
    returns the block's columns of the same cached forward at full length (zeros where nothing ran; to float64
    rounding, see above), and the tokens are exactly the same; Dream is asked for the outputs one to the left."""
    model = tiny_llada(2) if family == "llada" else tiny_dream(2)
    prompts = random_prompts(3, 9, 12 if family == "llada" else 29)
    expected, full = _cached_run(model, family, prompts, PLANNERS[planner](), window=False)
    got, windowed = _cached_run(model, family, prompts, PLANNERS[planner](), window=True)
    assert torch.equal(got, expected)
    assert len(windowed) == len(full) == 16
    shift = 1 if family == "dream" else 0
    for i, ((asked, logits), (none, reference)) in enumerate(zip(windowed, full)):
        start = 9 + 8 * (i // 8) - shift  # the current block's columns (raw outputs for Dream)
        assert none is None and asked == (start, start + 8)
        torch.testing.assert_close(logits, reference[:, start : start + 8], **FLOAT64_ROUNDING)


def _ssd(model, family, prompts, config, ssd, window):
    mask = LLADA_MASK if family == "llada" else DREAM_MASK
    sampler = MaskedDiffusionSampler(model, family=family, mask_id=mask)
    sampler.logits_window = window
    asked = []
    handle = model.register_forward_pre_hook(
        lambda m, args, kwargs: asked.append(kwargs.get("logits_range")), with_kwargs=True
    )
    try:
        policy = SelfSpeculativeDecoding(ssd) if ssd is not None else None
        return sampler.generate(prompts, config, policy=policy), sampler.last_record, asked
    finally:
        handle.remove()


@pytest.mark.parametrize("family", ["llada", "dream"])
@pytest.mark.parametrize("ssd", [SSDConfig(draft_length=3), SSDConfig(draft_length=2, adaptive=True)], ids=["N3", "ad"])
def test_ssd_on_block_windows_equals_stepwise_decoding(family, ssd):
    """Drafts and verifications read the window from the block start to the end of the sequence (the
    next block's first logits are carried over), and the tokens are those of the official-cost loop."""
    model = tiny_llada(2, seed=4) if family == "llada" else tiny_dream(2)
    prompts = random_prompts(6, 9, 12 if family == "llada" else 29)
    config = SamplingConfig(gen_length=16, steps=16, block_length=8, alg="maskgit_plus")
    expected, stepwise, _ = _ssd(model, family, prompts, config, None, window=False)
    got, record, asked = _ssd(model, family, prompts, config, ssd, window=True)
    assert torch.equal(got, expected)
    assert sum(a > 1 for a in record.accepted_per_round) > 0  # drafts were accepted
    assert record.forward_calls <= stepwise.forward_calls
    shift = 1 if family == "dream" else 0
    assert all(hi == 25 - shift and lo <= 17 - shift for lo, hi in asked) and (9 - shift, 25 - shift) in asked


def test_a_window_reaches_left_to_mask_tokens_an_earlier_block_committed():
    """This random Dream model commits its own mask id in the first block of one row; those positions stay
    masked, so the second block's steps read them too, and the window starts there."""
    model, prompts = tiny_dream(2), random_prompts(6, 9, 29)
    config = SamplingConfig(gen_length=16, steps=16, block_length=8, alg="maskgit_plus")
    expected, _, _ = _ssd(model, "dream", prompts, config, None, window=False)
    assert (expected[:, 9:17] == DREAM_MASK).any()
    for ssd in (None, SSDConfig(draft_length=3)):
        got, _, asked = _ssd(model, "dream", prompts, config, ssd, window=True)
        assert torch.equal(got, expected)
        assert min(lo for lo, _ in asked[1:] if lo is not None) < 16  # raw outputs left of the second block


def test_ssd_on_the_trained_model_with_block_windows_equals_stepwise_decoding(zoo_pipe):
    """float32 zoo weights: the windows' rounding may differ from the full forward's, the tokens do not."""
    prompts, _ = zoo_pipe.task.held_out(128, seed=99)
    g = zoo_pipe.task.gen_length
    for block_length in (g, g // 2):
        config = SamplingConfig(gen_length=g, steps=g, block_length=block_length)
        expected, _, _ = _ssd(zoo_pipe.model, "llada", prompts, config, None, window=False)
        got, _, asked = _ssd(zoo_pipe.model, "llada", prompts, config, SSDConfig(draft_length=4), window=True)
        assert torch.equal(got, expected) and all(a is not None for a in asked)


def test_wrapping_with_a_cache_or_ssd_turns_the_window_on_and_unwrap_off():
    pipe = LLaDAPipeline(tiny_llada(1))
    for strategy in ("dkv-cache", "ssd", "fast-dllm:cache=dual", ["ssd", "fast-dllm:threshold=None,cache=dual"]):
        diffaccel.wrap(pipe, strategy)
        assert pipe.sampler.logits_window
        diffaccel.unwrap(pipe)
        assert not pipe.sampler.logits_window
    diffaccel.wrap(pipe, "sparsed:compile=False")  # SparseD keeps the official loop and needs every query
    assert not pipe.sampler.logits_window
    assert all(m.needs_every_query for m in pipe.model.modules() if hasattr(m, "needs_every_query"))
    diffaccel.unwrap(pipe)
    assert not any(m.needs_every_query for m in pipe.model.modules() if hasattr(m, "needs_every_query"))


def test_the_window_is_asked_only_where_the_proposal_is_per_position_and_deterministic():
    def window(family, block=4, **options):
        sampler = MaskedDiffusionSampler(
            tiny_llada(1) if family == "llada" else tiny_dream(1), family=family, mask_id=1
        )
        sampler.logits_window = True
        config = SamplingConfig(gen_length=8, steps=8, block_length=block, **options).validate(family)
        x = torch.zeros(1, 12, dtype=torch.long)
        run = DecodeRun(x, None, config, 4, torch.arange(4), None, DecodeRecord(), run_id=0)
        return sampler.window_for(run, Block(1, 8, 12, 4)), sampler.window_for(run, Block(0, 4, 8, 4), to_end=True)

    assert window("llada") == ((8, 12), (4, 12))
    assert window("dream", alg="entropy") == ((8, 12), (4, 12))
    assert window("llada", temperature=0.5) == (None, None)
    assert window("llada", remasking="random") == (None, None)
    assert window("dream", alg="origin", schedule="dream_native", block=8) == (None, None)
    assert window("dream", temperature=0.3, alg="entropy") == (None, None)


def test_dream_pipeline_with_ssd_keeps_its_tokens():
    pipe, ids = DreamPipeline(tiny_dream(2)), random_prompts(4, 6, 29)
    run = dict(gen_length=12, steps=12, block_length=4, schedule="linear", alg="maskgit_plus", temperature=0.0)
    expected = pipe(input_ids=ids, **run).sequences
    diffaccel.wrap(pipe, "ssd")
    try:
        assert pipe.sampler.logits_window
        assert torch.equal(pipe(input_ids=ids, **run).sequences, expected)
    finally:
        diffaccel.unwrap(pipe)
