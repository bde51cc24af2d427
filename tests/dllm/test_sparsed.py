"""SparseD: schedule, pattern construction and FlexAttention execution (INV-WZQ/SparseD)."""

import math

import pytest
import torch

import diffaccel.dllm.sparsed as sparsed_module
from diffaccel.dllm.sampler import llada_generate
from diffaccel.dllm.sparse_patterns import build_sparse_pattern, dense_mask_from_pattern, generation_block_start
from diffaccel.dllm.sparsed import SparseDConfig, attach_sparsed, detach_sparsed, flex_attention_fn, make_block_mask

from .conftest import LLADA_MASK, random_prompts, tiny_llada

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without")

RUN = dict(steps=8, gen_length=16, block_length=8, mask_id=LLADA_MASK)


def _generate(model, prompts, config=None, **options):
    state = attach_sparsed(model, config) if config is not None else None
    try:
        return llada_generate(model, prompts, **options), state
    finally:
        if config is not None:
            detach_sparsed(model)


def test_skip_one_never_leaves_dense_attention():
    model, prompts = tiny_llada(2), random_prompts(2, 24, 12)
    expected, _ = _generate(model, prompts, **RUN)
    got, state = _generate(model, prompts, SparseDConfig(skip=1.0, block_size=8, compile=False), **RUN)
    assert torch.equal(got, expected)
    assert state.sparse_calls == 0 and state.patterns == {}


def test_select_one_equals_dense_and_the_pattern_is_built_once_at_t_star(monkeypatch):
    model, prompts = tiny_llada(2, dtype=torch.float32), random_prompts(2, 24, 12)
    expected, _ = _generate(model, prompts, **RUN)
    built_at = []
    real_build = sparsed_module.build_sparse_pattern

    def spy(q, k, **kwargs):
        built_at.append(state_holder[0].step.index)
        return real_build(q, k, **kwargs)

    monkeypatch.setattr(sparsed_module, "build_sparse_pattern", spy)
    config = SparseDConfig(skip=0.25, select=1.0, block_size=8, compile=False)
    state_holder = [attach_sparsed(model, config)]
    try:
        got = llada_generate(model, prompts, **RUN)
    finally:
        detach_sparsed(model)
    assert torch.equal(got, expected)
    t_star = math.floor(8 * 0.25) + 1
    assert built_at == [t_star, t_star]  # once per layer, at step floor(T*skip)+1
    state = state_holder[0]
    assert state.sparse_calls == 2 * (8 - t_star - 1) and state.kept_fraction() == 1.0


def _brute_force_pattern(q, k, gen_length, bs, select, scale):
    """SparseD's pattern rule with scalar loops over (batch, head, query block, key block)."""
    b_, h_, lq, _ = q.shape
    lk = k.shape[2]
    nq, nk = math.ceil(lq / bs), math.ceil(lk / bs)
    g = next((b for b in range(nk) if b * bs >= lk - gen_length), nk - 1)
    k1, k2 = min(nk, max(1, math.floor(nk * select) + 1)), min(nk - g, max(1, math.floor((nk - g) * select) + 1))
    out = torch.zeros(b_, h_, nq, nk, dtype=torch.bool)
    for b in range(b_):
        for h in range(h_):
            for qb in range(nq):
                rows = q[b, h, qb * bs : (qb + 1) * bs]
                full = torch.softmax(rows @ k[b, h].T * scale, -1)
                imp = [full[:, kb * bs : (kb + 1) * bs].mean().item() for kb in range(nk)]
                for kb in sorted(range(nk), key=lambda i: -imp[i])[:k1]:
                    if kb < g:
                        out[b, h, qb, kb] = True
                gen = torch.softmax(rows @ k[b, h, g * bs :].T * scale, -1)
                imp2 = [gen[:, (kb - g) * bs : (kb - g + 1) * bs].mean().item() for kb in range(g, nk)]
                for j in sorted(range(nk - g), key=lambda i: -imp2[i])[:k2]:
                    out[b, h, qb, g + j] = True
    return out


@pytest.mark.parametrize("length,gen,bs,select", [(40, 16, 8, 0.3), (37, 10, 8, 0.5), (32, 4, 8, 0.9)])
def test_pattern_matches_a_brute_force_computation(length, gen, bs, select):
    q, k = torch.randn(2, 3, length, 8, dtype=torch.float64), torch.randn(2, 3, length, 8, dtype=torch.float64)
    q[:, :, :, 0] *= 4  # spread the attention so that importances are distinct
    got = build_sparse_pattern(q, k, gen_length=gen, block_size=bs, select=select, scale=0.5)
    assert torch.equal(got, _brute_force_pattern(q, k, gen, bs, select, 0.5))
    assert bool(got.any(-1).all()), "every query block keeps at least one key block"


def test_generation_region_start():
    assert generation_block_start(40, 16, 8) == 3  # blocks start at 0,8,16,24,32; 24 is the first >= 24
    assert generation_block_start(40, 4, 8) == 4  # no block starts in the last 4 positions: the last block


def test_block_mask_expansion_and_flex_output_match_sdpa_with_the_same_boolean_mask():
    q, k, v = (torch.randn(1, 2, 56, 16) for _ in range(3))
    pattern = build_sparse_pattern(q, k, gen_length=16, block_size=8, select=0.3, scale=0.25)
    dense_mask = dense_mask_from_pattern(pattern, 56, 56, 8)
    for qi in (0, 13, 55):
        for ki in (3, 31, 50):
            assert dense_mask[0, 1, qi, ki] == pattern[0, 1, qi // 8, ki // 8]
    flex = flex_attention_fn(compiled=False)
    out = flex(q, k, v, block_mask=make_block_mask(pattern, 56, 56, 8))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense_mask)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_sparse_steps_use_flex_and_a_new_run_rebuilds_the_pattern():
    model, prompts = tiny_llada(2, dtype=torch.float32), random_prompts(1, 40, 12)
    config = SparseDConfig(skip=0.2, select=0.3, block_size=8, compile=False)
    state = attach_sparsed(model, config)
    try:
        llada_generate(model, prompts, **RUN)
        first = {i: p.clone() for i, p in state.patterns.items()}
        assert state.sparse_calls > 0 and 0 < state.kept_fraction() < 1
        llada_generate(model, random_prompts(1, 40, 12, seed=9), **RUN)
        assert any(not torch.equal(first[i], state.patterns[i]) for i in first)
    finally:
        detach_sparsed(model)


def test_config_validation():
    with pytest.raises(ValueError, match="select"):
        SparseDConfig(select=0.0)
    with pytest.raises(ValueError, match="block_size"):
        SparseDConfig(block_size=0)


@pytest.mark.parametrize("length, bs", [(37, 8), (64, 16), (20, 32)])
@pytest.mark.parametrize("kernel", ["gather", "tiles", "tiles-3"])
def test_cpu_kernels_equal_dense_attention_under_the_pattern_mask(length, bs, kernel):
    """Our CPU kernels against PyTorch's SDPA with the pattern as a boolean mask (float64): rows keeping
    different numbers of blocks, a row keeping only the partial last block; ``tiles-3``: three query blocks
    of one count per call."""
    from diffaccel.dllm.sparse_patterns import (
        gathered_block_attention,
        kept_block_groups,
        kept_block_index,
        tiled_block_attention,
    )

    torch.manual_seed(length)
    q, k, v = (torch.randn(2, 3, length, 8, dtype=torch.float64) for _ in range(3))
    nb = math.ceil(length / bs)
    pattern = torch.rand(2, 3, nb, nb) < 0.4
    pattern[..., -1] = True  # every query block keeps at least one key block, as SparseD's pass 2 ensures
    pattern[1, 2, 0] = False
    pattern[1, 2, 0, -1] = True
    mask = dense_mask_from_pattern(pattern, length, length, bs)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if kernel == "gather":
        got = gathered_block_attention(q, k, v, kept_block_index(pattern), bs, query_blocks_per_chunk=2)
    else:
        per_call = 3 if kernel == "tiles-3" else 1
        got = tiled_block_attention(q, k, v, kept_block_groups(pattern), bs, query_blocks_per_call=per_call)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)


def test_kept_block_groups_list_each_query_blocks_own_kept_blocks():
    from diffaccel.dllm.sparse_patterns import kept_block_groups

    pattern = torch.tensor([[[[1, 0, 1], [0, 1, 0]], [[1, 1, 0], [0, 0, 1]]]], dtype=torch.bool)  # [1, 2, 2, 3]
    groups = [(rows.tolist(), keys.tolist()) for rows, keys in kept_block_groups(pattern)]
    # query blocks (flat b, h, qb): 0 keeps key blocks 0, 2; 1 keeps 1; 2 (head 1) keeps 0, 1; 3 keeps 2;
    # key rows are flat (b, h, kb): head 1's blocks start at 3
    assert sorted(groups) == [([0, 2], [[0, 2], [3, 4]]), ([1, 3], [[1], [5]])]


def test_cpu_kernels_give_the_flex_kernels_logits():
    model, prompts = tiny_llada(2), random_prompts(2, 24, 12)
    logits = {"flex": [], "gather": [], "tiles": []}
    for kernel in logits:
        seen = logits[kernel]
        handle = model.register_forward_hook(lambda module, args, out, seen=seen: seen.append(out.logits))
        try:
            _, state = _generate(
                model,
                prompts,
                SparseDConfig(skip=0.25, select=0.4, block_size=8, compile=False, kernel=kernel),
                **RUN,
            )
        finally:
            handle.remove()
        assert state.sparse_calls > 0
    for kernel in ("gather", "tiles"):
        assert len(logits["flex"]) == len(logits[kernel]) == 8
        assert all(torch.allclose(a, b, rtol=0, atol=1e-9) for a, b in zip(logits["flex"], logits[kernel]))
    with pytest.raises(ValueError, match="kernel must be one of 'flex', 'gather', 'tiles', 'auto'"):
        SparseDConfig(kernel="triton")
    with pytest.raises(ValueError, match="auto_tiles_from"):
        SparseDConfig(kernel="auto", auto_tiles_from=0)


# kernel, auto_tiles_from, the kernel that must run on 45 keys
KERNEL_CASES = [
    ("flex", 16384, "flex"),
    ("gather", 16384, "gather"),
    ("tiles", 16384, "tiles"),
    ("auto", 46, "gather"),
    ("auto", 45, "tiles"),
]


@pytest.mark.parametrize("kernel, tiles_from, runs", KERNEL_CASES)
def test_every_kernel_equals_dense_attention_under_the_pattern_mask(kernel, tiles_from, runs):
    """Each kernel (and `auto` on either side of its length threshold) against PyTorch's SDPA with the
    pattern expanded to a boolean mask, in float64, partial last block (45 = 5 * 8 + 5): equal to 1e-12."""
    from diffaccel.dllm.sparsed import SparseDAttentionHook, SparseDState

    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 3, 45, 8, dtype=torch.float64) for _ in range(3))
    pattern = build_sparse_pattern(q, k, gen_length=13, block_size=8, select=0.4, scale=0.5)
    assert 0 < pattern.float().mean() < 1
    config = SparseDConfig(block_size=8, compile=False, kernel=kernel, auto_tiles_from=tiles_from)
    assert config.kernel_for(45) == runs
    state = SparseDState(patterns={0: pattern})
    got = SparseDAttentionHook(config, state, 0, 0.5).sparse(q, k, v)
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=dense_mask_from_pattern(pattern, 45, 45, 8)
    )
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
    built = state.block_masks[0]  # gather: its block index; tiles: the groups; flex: a BlockMask
    ran = "gather" if isinstance(built, tuple) else "tiles" if isinstance(built, list) else "flex"
    assert ran == runs and state.sparse_calls == 1


def test_compiled_flex_attention_without_a_cpu_compiler_raises_naming_the_options(monkeypatch):
    """No silent fallback: torch.compile's CPU backend needs a C++ compiler; without one the sparse step says so."""
    import torch._inductor.cpp_builder as cpp_builder

    from diffaccel.dllm.sparsed import SparseDAttentionHook, SparseDState

    def no_compiler():
        raise RuntimeError("no C++ compiler on PATH")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    q = k = v = torch.randn(1, 2, 16, 8)
    pattern = torch.ones(1, 2, 2, 2, dtype=torch.bool)
    hook = SparseDAttentionHook(SparseDConfig(block_size=8, compile=True), SparseDState(patterns={0: pattern}), 0, 0.5)
    with pytest.raises(RuntimeError, match="needs a C\\+\\+ compiler.*compile=False.*kernel='tiles'"):
        hook.sparse(q, k, v)
