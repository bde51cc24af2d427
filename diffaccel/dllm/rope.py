"""Rotary position embedding with explicit positions (LLaDA's rotate-half RoPE; explicit positions are ours, for the caches).

Both LLaDA and Dream use the non-interleaved "rotate-half" form computed in float32. Positions are
always passed explicitly so that a forward over a subset of tokens (dKV-Cache, Fast-dLLM caches,
SSD node packing) gives each token its true position.
"""

from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16/float32 models (as the official code), float64 for float64 models."""
    return torch.promote_types(dtype, torch.float32)


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of shape ``[B, L, head_dim]`` (in ``dtype``) for integer ``positions`` ``[B, L]``."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=dtype) / head_dim))
    freqs = positions.to(dtype)[..., None] * inv_freq  # [B, L, head_dim/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None) -> torch.Tensor:
    """Rotate ``x`` ``[B, H, L, D]`` by cos/sin ``[B, L, D]`` in their dtype, return in x's dtype.
    ``cos is None``: a model without RoPE (LLaDA with ``rope=False``); ``x`` is returned unchanged."""
    if cos is None:
        return x
    cos = cos[:, None]
    sin = sin[:, None]
    xf = x.to(cos.dtype)
    return (xf * cos + rotate_half(xf) * sin).to(x.dtype)
