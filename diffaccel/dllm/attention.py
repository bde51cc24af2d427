"""The attention entry point shared by the LLaDA and Dream ports (ours; docs/methods.md).

Every transformer block owns one parameter-free :class:`BidirectionalAttention` module and calls it
with post-RoPE queries, keys and values of the tokens that are actually being run, plus their true
positions. This module is the single place where acceleration hooks act on attention:

* KV caches (dKV-Cache, Fast-dLLM prefix/dual cache) append cached keys/values of tokens that are
  not in the input;
* SparseD replaces the dense kernel with a FlexAttention block mask.

Because it has no parameters, adding it does not change the checkpoint's parameter names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .rope import apply_rope


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Expand grouped key/value heads ``[B, Hkv, L, D]`` to ``[B, Hkv*n_rep, L, D]`` (GQA)."""
    if n_rep == 1:
        return x
    b, h, l, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, l, d).reshape(b, h * n_rep, l, d)


def dense_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Non-causal scaled-dot-product attention, scale ``1/sqrt(head_dim)``.

    ``key_padding_mask`` is ``[B, Lk]`` bool with True for keys that may be attended to.
    """
    n_rep = q.shape[1] // k.shape[1]
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    attn_mask = None
    if key_padding_mask is not None:
        attn_mask = key_padding_mask[:, None, None, :].to(torch.bool)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=False)


class BidirectionalAttention(nn.Module):
    """Parameter-free attention kernel call; the hook point for caches and sparse attention.

    ``forward(q, k, v, positions, key_padding_mask, key_positions)``: ``q`` ``[B, Hq, Lq, D]``,
    ``k``/``v`` ``[B, Hkv, Lk, D]`` (post-RoPE), ``positions`` ``[B, Lq]`` the true sequence positions
    of the queries. ``key_positions`` ``[B, Lk]`` is given when the keys are not the queries' own
    (a KV cache appended cached keys; sparse attention reads it to find each key's block); the dense
    kernel ignores it. Returns ``[B, Hq, Lq, D]``.
    """

    def __init__(self, layer_index: int) -> None:
        super().__init__()
        self.layer_index = layer_index
        #: set by a kernel hook that needs every query row of every forward (SparseD builds its pattern
        #: from them): the model then never runs a subset of this layer's queries for a ``logits_range``
        self.needs_every_query = False

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        positions: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        key_positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return dense_attention(q, k, v, key_padding_mask)


def project_and_attend(
    module: nn.Module, h: torch.Tensor, cos, sin, positions, key_padding_mask, rows: slice | None = None
) -> torch.Tensor:
    """q/k/v projections, RoPE and the attention call of a port's block (``module`` has ``q_proj``,
    ``k_proj``, ``v_proj``, ``attention``, head counts); ``[B, Lq, H*D]`` before the output projection.

    ``rows`` [ours]: queries of those positions only, against the keys and values of all of them (the
    last block of a forward asked for a ``logits_range``); ``key_positions`` then tells the kernel hooks
    the keys' positions."""
    b, l, _ = h.shape
    k = module.k_proj(h).view(b, l, module.n_kv_heads, module.head_dim).transpose(1, 2)
    v = module.v_proj(h).view(b, l, module.n_kv_heads, module.head_dim).transpose(1, 2)
    k = apply_rope(k, cos, sin)
    key_positions = None
    if rows is not None:
        h, key_positions = h[:, rows], positions
        positions = positions[:, rows]
        if cos is not None:
            cos, sin = cos[:, rows], sin[:, rows]
    lq = h.shape[1]
    q = apply_rope(module.q_proj(h).view(b, lq, module.n_heads, module.head_dim).transpose(1, 2), cos, sin)
    att = module.attention(q, k, v, positions=positions, key_padding_mask=key_padding_mask, key_positions=key_positions)
    return att.transpose(1, 2).reshape(b, lq, -1)


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in (at least) float32 (LLaDA ``RMSLayerNorm`` / Qwen2 ``RMSNorm``)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        xf = x.to(torch.promote_types(dtype, torch.float32))
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(dtype)
