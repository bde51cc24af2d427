"""dKV-Cache and Fast-dLLM caches: exactness where their methods say they are exact."""

import copy

import pytest
import torch

from diffaccel.dllm import dkv_cache, fast_dllm
from diffaccel.dllm.kv_cache import attach_planner, detach_planner
from diffaccel.dllm.sampler import dream_generate, llada_generate

from .conftest import DREAM_MASK, LLADA_MASK, random_prompts, tiny_dream, tiny_llada

LLADA_RUN = dict(steps=16, gen_length=16, block_length=8, mask_id=LLADA_MASK)
DREAM_RUN = dict(max_new_tokens=16, steps=16, block_length=8, schedule="linear", alg="maskgit_plus", mask_id=DREAM_MASK)


def _generate(model, prompts, planner=None, **options):
    cache = attach_planner(model, planner) if planner is not None else None
    try:
        if "max_new_tokens" in options:
            return dream_generate(model, prompts, **options), cache
        return llada_generate(model, prompts, **options), cache
    finally:
        if planner is not None:
            detach_planner(model)


@pytest.mark.parametrize("n_layers", [2, 3])
def test_dkv_decode_with_refresh_every_step_equals_no_cache(n_layers):
    model, prompts = tiny_llada(n_layers), random_prompts(4, 9, 12)
    expected, _ = _generate(model, prompts, **LLADA_RUN)
    planner = dkv_cache.make_planner(dkv_cache.DKVCacheConfig(refresh_interval=1))
    got, _ = _generate(model, prompts, planner, **LLADA_RUN)
    assert torch.equal(got, expected)
    assert planner.cached_forwards == 0 and planner.full_forwards == 16


def test_dkv_greedy_with_refresh_every_step_equals_the_random_order_reference():
    model, prompts = tiny_llada(2), random_prompts(3, 9, 12)
    options = dict(LLADA_RUN, remasking="random_order")
    expected, _ = _generate(model, prompts, generator=torch.Generator().manual_seed(5), **options)
    planner = dkv_cache.make_planner(dkv_cache.DKVCacheConfig(variant="greedy", refresh_interval=1))
    got, _ = _generate(model, prompts, planner, generator=torch.Generator().manual_seed(5), **options)
    assert torch.equal(got, expected)


def _needed(step, x):
    """Raw output positions the sampler reads: commit candidates (masked, before the block end, or the
    planned ones), moved one left for Dream's shifted logits."""
    candidates = (x == step.mask_id) & (torch.arange(x.shape[1]) < step.block_end)
    if step.planned_commit is not None:
        candidates = step.planned_commit
    if not step.shifted_logits:
        return candidates
    needed = torch.zeros_like(candidates)
    needed[:, :-1] = candidates[:, 1:]
    return needed


def _cached_logits_match_full_forward(model, prompts, planner, family, **options):
    """Every forward of a cached run: logits at the positions the sampler reads equal a full forward."""
    reference = copy.deepcopy(model)
    calls = []
    handle = model.register_forward_hook(
        lambda m, args, kwargs, out: calls.append(
            (kwargs["input_ids"] if "input_ids" in kwargs else args[0], kwargs["decode_step"], out.logits)
        ),
        with_kwargs=True,
    )
    try:
        _generate(model, prompts, planner, **options)
    finally:
        handle.remove()
    assert planner.cached_forwards > 0, "the test must exercise cached steps"
    for x, step, logits in calls:
        full = reference(x).logits
        needed = _needed(step, x)
        torch.testing.assert_close(logits[needed], full[needed], atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize(
    "make",
    [
        lambda: dkv_cache.make_planner(dkv_cache.DKVCacheConfig(refresh_interval=4)),
        lambda: dkv_cache.make_planner(dkv_cache.DKVCacheConfig(refresh_interval=100)),
        lambda: fast_dllm.make_planner(fast_dllm.FastDLLMConfig(cache="prefix")),
        lambda: fast_dllm.make_planner(fast_dllm.FastDLLMConfig(cache="dual")),
    ],
    ids=["decode-R4", "decode-R100", "prefix", "dual"],
)
def test_every_cache_is_exact_on_a_one_layer_llada(make):
    _cached_logits_match_full_forward(tiny_llada(1), random_prompts(3, 9, 12), make(), "llada", **LLADA_RUN)


@pytest.mark.parametrize(
    "make",
    [
        lambda: dkv_cache.make_planner(dkv_cache.DKVCacheConfig(refresh_interval=4)),
        lambda: fast_dllm.make_planner(fast_dllm.FastDLLMConfig(cache="dual")),
    ],
    ids=["decode-R4", "dual"],
)
def test_caches_are_exact_with_learned_positions(make):
    """Subset forwards embed each token at its true position (``wpe`` rows), as a full forward does."""
    _cached_logits_match_full_forward(tiny_llada(1, rope=False), random_prompts(3, 9, 12), make(), "llada", **LLADA_RUN)


def test_dkv_greedy_is_exact_on_a_one_layer_llada():
    planner = dkv_cache.make_planner(dkv_cache.DKVCacheConfig(variant="greedy", refresh_interval=4, window_size=2))
    _cached_logits_match_full_forward(
        tiny_llada(1),
        random_prompts(1, 9, 12),
        planner,
        "llada",
        remasking="random_order",
        generator=torch.Generator().manual_seed(3),
        **LLADA_RUN,
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: dkv_cache.make_planner(dkv_cache.DKVCacheConfig(refresh_interval=4, shift_type="right")),
        lambda: dkv_cache.make_planner(dkv_cache.DKVCacheConfig(refresh_interval=4, shift_type="un_right")),
        lambda: fast_dllm.make_planner(fast_dllm.FastDLLMConfig(cache="prefix")),
        lambda: fast_dllm.make_planner(fast_dllm.FastDLLMConfig(cache="dual")),
    ],
    ids=["decode-right", "decode-un_right", "prefix", "dual"],
)
def test_every_exact_cache_is_exact_on_a_one_layer_dream(make):
    _cached_logits_match_full_forward(tiny_dream(1), random_prompts(2, 6, 29), make(), "dream", **DREAM_RUN)


def test_dkv_decode_cache_holds_exactly_the_positions_decoded_before_the_previous_step():
    model, prompts = tiny_llada(2), random_prompts(2, 9, 12)
    planner = dkv_cache.make_planner(dkv_cache.DKVCacheConfig(refresh_interval=100))
    cache = attach_planner(model, planner)
    seen = []
    handle = model.register_forward_hook(
        lambda m, args, kwargs, out: seen.append(
            (kwargs["decode_step"].step_in_block, args[0].clone(), cache.valid.clone())
        ),
        with_kwargs=True,
    )
    try:
        llada_generate(model, prompts, **LLADA_RUN)
    finally:
        handle.remove()
        detach_planner(model)
    for i, x, valid in seen:
        # after the forward of step i the cache holds D_{i-1}: the positions decoded in this step's input
        assert torch.equal(valid, x != LLADA_MASK if i > 0 else torch.zeros_like(valid))


def test_on_the_trained_model_refresh_one_is_exact_and_longer_intervals_compute_less(zoo_pipe):
    import diffaccel

    prompts, _ = zoo_pipe.task.held_out(64)
    full = zoo_pipe(input_ids=prompts)
    computed = {}
    for interval in (1, 4):
        diffaccel.wrap(zoo_pipe, "dkv-cache", refresh_interval=interval)
        try:
            out = zoo_pipe(input_ids=prompts)
            computed[interval] = diffaccel.summary(zoo_pipe).computed_fraction
        finally:
            diffaccel.unwrap(zoo_pipe)
        if interval == 1:
            assert torch.equal(out.sequences, full.sequences)
    assert computed[1] == 1.0 and computed[4] < 1.0


def test_caches_reject_cfg_and_padding():
    model, prompts = tiny_llada(1), random_prompts(2, 5, 12)
    attach_planner(model, dkv_cache.make_planner(dkv_cache.DKVCacheConfig()))
    try:
        with pytest.raises(ValueError, match="classifier-free guidance"):
            llada_generate(model, prompts, cfg_scale=1.0, **LLADA_RUN)
        mask = torch.ones(2, 5, dtype=torch.long)
        mask[0, 0] = 0
        with pytest.raises(ValueError, match="padded"):
            llada_generate(model, prompts, attention_mask=mask, **LLADA_RUN)
        # after the errors a new run starts clean and matches the uncached run at R = 1 semantics
        out = llada_generate(model, prompts, **LLADA_RUN)
    finally:
        detach_planner(model)
    assert out.shape == (2, 21)
    with pytest.raises(ValueError, match="random_order"):
        attach_planner(model, dkv_cache.make_planner(dkv_cache.DKVCacheConfig(variant="greedy")))
        try:
            llada_generate(model, prompts, **LLADA_RUN)
        finally:
            detach_planner(model)


def test_config_validation():
    with pytest.raises(ValueError, match="refresh_interval"):
        dkv_cache.DKVCacheConfig(refresh_interval=0)
    with pytest.raises(ValueError, match="variant"):
        dkv_cache.DKVCacheConfig(variant="fast")
    with pytest.raises(ValueError, match="cache"):
        fast_dllm.FastDLLMConfig(cache="triple")
