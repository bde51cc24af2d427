"""SparseD's head-specific block-sparse attention patterns, as pure functions (`SparseD_utils.py` in INV-WZQ/SparseD).

The pattern is computed once, from one step's post-RoPE queries and keys, per (batch, head):
for each query block, the key blocks with the largest mean attention ("isolated selection":
prefill keys scored against all keys, generation keys scored among themselves) are kept.
"""

from __future__ import annotations

import math

import torch


def generation_block_start(seq_len: int, gen_length: int, block_size: int) -> int:
    """``g``: the first block whose start lies in the last ``gen_length`` positions, else the last block."""
    num_blocks = math.ceil(seq_len / block_size)
    first = seq_len - gen_length
    for b in range(num_blocks):
        if b * block_size >= first:
            return b
    return num_blocks - 1


def tile_means(probs: torch.Tensor, block_size: int) -> torch.Tensor:
    """Mean of ``probs`` ``[..., rows, Lk]`` over each column tile of ``block_size`` keys: ``[..., nk]``
    (partial last tile averaged over its real columns)."""
    lk = probs.shape[-1]
    nk = math.ceil(lk / block_size)
    padded = torch.nn.functional.pad(probs, (0, nk * block_size - lk))
    sums = padded.unflatten(-1, (nk, block_size)).sum(dim=(-3, -1))
    widths = torch.full((nk,), float(block_size), device=probs.device)
    widths[-1] = lk - (nk - 1) * block_size
    return sums / (widths * probs.shape[-2])


def topk_blocks(importance: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the ``k`` most important blocks (clamped to the number of blocks)."""
    k = max(1, min(k, importance.shape[-1]))
    index = torch.topk(importance, k, dim=-1).indices
    return torch.zeros_like(importance, dtype=torch.bool).scatter(-1, index, True)


def build_sparse_pattern(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    gen_length: int,
    block_size: int,
    select: float,
    scale: float,
    query_blocks_per_chunk: int = 8,
) -> torch.Tensor:
    """Kept key blocks ``[B, H, nq, nk]`` (bool) for queries ``q`` ``[B, H, L, D]`` and keys ``k``
    ``[B, H, L, D]`` (already expanded to the query heads).

    Pass 1 keeps the top ``max(1, floor(nk*select)+1)`` blocks scored against all keys and drops
    those in the generation region; pass 2 keeps the top ``max(1, floor((nk-g)*select)+1)`` generation
    blocks scored against generation keys only; the two are OR-ed (`SparseD_utils.py` in INV-WZQ/SparseD). ``k`` values larger
    than the number of blocks are clamped (the official code would raise).
    """
    batch, heads, lq, _ = q.shape
    lk = k.shape[2]
    nq, nk = math.ceil(lq / block_size), math.ceil(lk / block_size)
    g = generation_block_start(lk, gen_length, block_size)
    k1 = max(1, math.floor(nk * select) + 1)
    k2 = max(1, math.floor((nk - g) * select) + 1)
    pattern = torch.zeros(batch, heads, nq, nk, dtype=torch.bool, device=q.device)
    kf = k.float()
    gen_keys = kf[:, :, g * block_size :]
    for first in range(0, nq, query_blocks_per_chunk):
        last = min(nq, first + query_blocks_per_chunk)
        for qb in range(first, last):
            rows = q[:, :, qb * block_size : (qb + 1) * block_size].float()
            probs = torch.softmax(rows @ kf.transpose(-1, -2) * scale, dim=-1)
            keep = topk_blocks(tile_means(probs, block_size), k1)
            keep[..., g:] = False
            gen_probs = torch.softmax(rows @ gen_keys.transpose(-1, -2) * scale, dim=-1)
            keep[..., g:] |= topk_blocks(tile_means(gen_probs, block_size), k2)
            pattern[:, :, qb] = keep
    return pattern


def dense_mask_from_pattern(pattern: torch.Tensor, lq: int, lk: int, block_size: int) -> torch.Tensor:
    """Expand a block pattern to a boolean attention mask ``[B, H, Lq, Lk]`` (for tests and checks)."""
    expanded = pattern.repeat_interleave(block_size, dim=2).repeat_interleave(block_size, dim=3)
    return expanded[:, :, :lq, :lk]


def kept_block_index(pattern: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept key blocks of every query block as indices ``[B, H, nq, kmax]`` (padded with block 0)
    and which of them are real ``[B, H, nq, kmax]``; computed once per pattern and reused by every call."""
    counts = pattern.sum(dim=-1)
    kmax = max(1, int(counts.max()))
    index = torch.sort(pattern.to(torch.int8), dim=-1, descending=True, stable=True).indices[..., :kmax]
    real = torch.arange(kmax, device=pattern.device) < counts[..., None]
    return torch.where(real, index, 0), real


def gathered_block_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kept: tuple[torch.Tensor, torch.Tensor],
    block_size: int,
    query_blocks_per_chunk: int = 8,
) -> torch.Tensor:
    """[ours] Block-sparse attention by gathering: each query block attends only to the keys of its kept
    blocks, gathered into a dense tile, so the work is proportional to the kept fraction (no compiled
    kernel). ``q`` ``[B, H, L, D]``, ``k``/``v`` ``[B, H, Lk, D]`` (expanded to the query heads),
    ``kept`` from :func:`kept_block_index`. Equal to dense attention under the pattern's mask up to
    rounding (tests)."""
    batch, heads, lq, dim = q.shape
    lk = k.shape[2]
    index, real = kept
    nq = index.shape[2]
    nk = math.ceil(lk / block_size)
    pad = torch.nn.functional.pad
    queries = pad(q, (0, 0, 0, nq * block_size - lq)).view(batch, heads, nq, block_size, dim)
    keys = pad(k, (0, 0, 0, nk * block_size - lk)).view(batch, heads, nk, block_size, dim)
    values = pad(v, (0, 0, 0, nk * block_size - lk)).view(batch, heads, nk, block_size, dim)
    key_real = (torch.arange(nk * block_size, device=q.device) < lk).view(nk, block_size)
    b = torch.arange(batch, device=q.device)[:, None, None, None]
    h = torch.arange(heads, device=q.device)[None, :, None, None]
    out = q.new_empty(batch, heads, nq, block_size, dim)
    for first in range(0, nq, query_blocks_per_chunk):
        last = min(nq, first + query_blocks_per_chunk)
        chunk = index[:, :, first:last]
        tile_k = keys[b, h, chunk].flatten(3, 4)  # [B, H, c, kmax * bs, D]
        tile_v = values[b, h, chunk].flatten(3, 4)
        kept_keys = (real[:, :, first:last, :, None] & key_real[chunk]).flatten(3, 4)
        bias = torch.zeros(kept_keys.shape, dtype=q.dtype, device=q.device).masked_fill_(~kept_keys, float("-inf"))
        # 4-D inputs with an additive mask: (batch, heads x query blocks) keeps PyTorch's fused CPU kernel,
        # which 5-D inputs or a boolean mask would leave for the unfused math path
        count = heads * (last - first)
        out[:, :, first:last] = torch.nn.functional.scaled_dot_product_attention(
            queries[:, :, first:last].reshape(batch, count, block_size, dim),
            tile_k.reshape(batch, count, -1, dim),
            tile_v.reshape(batch, count, -1, dim),
            attn_mask=bias.reshape(batch, count, 1, -1),
        ).view(batch, heads, last - first, block_size, dim)
    return out.view(batch, heads, nq * block_size, dim)[:, :, :lq]


def kept_block_groups(pattern: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The kept key blocks of every (batch, head, query block), grouped by how many they keep.

    One ``(query_rows [G], key_rows [G, count])`` per count: flat indices into the ``B*H*nq`` query blocks
    and the ``B*H*nk`` key blocks (each query block's own batch and head). Built once per pattern."""
    batch, heads, nq, nk = pattern.shape
    flat = pattern.reshape(batch * heads * nq, nk)
    counts = flat.sum(dim=1)
    base = (torch.arange(batch * heads * nq, device=pattern.device) // nq) * nk
    groups = []
    for count in torch.unique(counts).tolist():
        if count == 0:
            continue
        rows = (counts == count).nonzero()[:, 0]
        keys = flat[rows].nonzero()[:, 1].view(-1, count) + base[rows, None]  # nonzero: row-major, sorted
        groups.append((rows, keys))
    return groups


def tiled_block_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    groups: list[tuple[torch.Tensor, torch.Tensor]],
    block_size: int,
    query_blocks_per_call: int = 1,
) -> torch.Tensor:
    """[ours] Block-sparse attention for CPUs, one dense tile per query block and nothing padded.

    Keys and values are viewed as a table of key blocks (one contiguous row of ``block_size * D`` numbers
    each); a query block's kept blocks are copied out of it with one ``index_select`` (a contiguous row
    copy, much cheaper than advanced indexing) and attended to with PyTorch's fused SDPA, exactly those
    keys: no padding to the longest row and no mask (except the sequence's partial last key block). Query
    blocks that keep the same number of blocks (``groups``, :func:`kept_block_groups`) may share a call
    (``query_blocks_per_call``); on one CPU thread one per call was fastest (``eval/dllm_long_context.py``),
    because a small tile stays in cache. Equal to dense attention under the pattern's mask up to rounding
    (tests). ``q`` ``[B, H, L, D]``, ``k``/``v`` ``[B, H, Lk, D]`` expanded to the query heads."""
    batch, heads, lq, dim = q.shape
    lk = k.shape[2]
    nq, nk = math.ceil(lq / block_size), math.ceil(lk / block_size)
    pad = torch.nn.functional.pad
    queries = pad(q, (0, 0, 0, nq * block_size - lq)).reshape(batch * heads * nq, block_size, dim)
    keys = pad(k, (0, 0, 0, nk * block_size - lk)).reshape(batch * heads * nk, block_size * dim)
    values = pad(v, (0, 0, 0, nk * block_size - lk)).reshape(batch * heads * nk, block_size * dim)
    partial = lk % block_size  # real keys of the last block (0: it is full)
    out = q.new_empty(batch * heads * nq, block_size, dim)
    for rows, key_rows in groups:
        width = key_rows.shape[1] * block_size
        for first in range(0, rows.shape[0], query_blocks_per_call):
            chunk, kept = rows[first : first + query_blocks_per_call], key_rows[first : first + query_blocks_per_call]
            g = chunk.shape[0]
            mask = None
            if partial:
                real = torch.ones(g, kept.shape[1], block_size, dtype=torch.bool, device=q.device)
                real[..., partial:] = (kept % nk != nk - 1)[..., None]
                if not bool(real.all()):
                    mask = torch.zeros(real.shape, dtype=q.dtype, device=q.device).masked_fill_(~real, float("-inf"))
                    mask = mask.view(1, g, 1, width)
            flat = kept.reshape(-1)
            out[chunk] = torch.nn.functional.scaled_dot_product_attention(
                queries[chunk][None],
                keys.index_select(0, flat).view(1, g, width, dim),
                values.index_select(0, flat).view(1, g, width, dim),
                attn_mask=mask,
            )[0]
    return out.view(batch, heads, nq * block_size, dim)[:, :, :lq]
