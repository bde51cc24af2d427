"""What the LLaDA and Dream ports share as models: the properties the sampler, loaders and hooks read."""

from __future__ import annotations

import torch
from torch import nn


class DiffusionLM(nn.Module):
    """Base of the dLLM ports. A subclass sets ``config`` and keeps the whole computation (embedding
    to logits) in ``self.model``: that inner module is the ``body`` on which K/V-cache subset forwards
    hook, so they sit inside the diffaccel engine's hook on the outer model."""

    config: object
    model: nn.Module

    @property
    def mask_token_id(self) -> int:
        return self.config.mask_token_id

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def body(self) -> nn.Module:
        """The inner module that computes logits from tokens (hook point for subset forwards)."""
        return self.model

    def body_arguments(self) -> dict:
        """Extra keyword arguments of the body's call (Dream passes its ``lm_head``)."""
        return {}

    def forward(self, input_ids, attention_mask=None, position_ids=None, decode_step=None, logits_range=None):
        # ``decode_step`` (a :class:`diffaccel.dllm.sampler.DecodeStep`) is ignored by the model itself;
        # it tells acceleration hooks where the sampler is (block, step, run).
        return self.model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            decode_step=decode_step,
            logits_range=logits_range,
            **self.body_arguments(),
        )


def logits_window(logits_range, length: int) -> slice | None:
    """``logits_range=(lo, hi)`` of a forward as a slice of its ``length`` input positions (``None``: all).

    [ours] A forward asked for ``logits_range`` returns logits ``[B, hi - lo, V]`` for input positions
    ``lo .. hi-1`` only: the head runs on those rows, and so does the last block's work after its keys
    and values (queries, attention, MLP), which no other position's output depends on. Callers that read
    only some positions (a K/V cache's later steps, SSD's drafts and verifications, ``LLaDA2Pipeline``'s
    last block) get the same logits there for a fraction of the last block and head."""
    if logits_range is None:
        return None
    lo, hi = (int(v) for v in logits_range)
    if not 0 <= lo < hi <= length:
        raise ValueError(f"logits_range must satisfy 0 <= lo < hi <= {length} (the input length), got {logits_range}")
    return slice(lo, hi)


def run_blocks(blocks, x, cos, sin, positions, key_padding_mask, window: slice | None):
    """The transformer blocks; returns ``(hidden, keep)``: the logits of ``window`` are ``head(hidden)[:, keep]``.

    The last block computes its query rows only around ``window`` (at least ``MIN_QUERY_ROWS`` of them, kept
    through the head too) unless its attention kernel reads every query (SparseD builds its pattern from all
    of them; :attr:`BidirectionalAttention.needs_every_query`), then the window is cut after it."""
    last, length = len(blocks) - 1, x.shape[1]
    keep = slice(None)
    for i, block in enumerate(blocks):
        rows = window if i == last and not block_attention(block).needs_every_query else None
        if rows is not None and rows.stop - rows.start < MIN_QUERY_ROWS:
            rows = widened(rows, length)
        x = block(x, cos, sin, positions, key_padding_mask, rows=rows)
        if i == last and window is not None:
            if rows is None:
                x = x[:, window]
            else:
                keep = slice(window.start - rows.start, window.stop - rows.start)
    return x, keep


#: PyTorch's CPU kernels compute very few rows through other instructions, whose last bits differ from the
#: same rows among many (measured with torch 2.13: SDPA with one query row in float32, up to three in
#: float64; a float64 matrix product with three rows); a narrower window runs this many rows (its
#: neighbours too) through the last block and the head, and keeps its own
MIN_QUERY_ROWS = 8


def widened(rows: slice, length: int) -> slice:
    """``rows`` grown to ``MIN_QUERY_ROWS`` positions (or all ``length``), rightwards first."""
    stop = min(length, rows.start + MIN_QUERY_ROWS)
    return slice(max(0, min(rows.start, stop - MIN_QUERY_ROWS)), max(stop, rows.stop))


def block_attention(block: nn.Module):
    """The :class:`~diffaccel.dllm.attention.BidirectionalAttention` of one transformer block."""
    attention = getattr(block, "attention", None)
    return attention if attention is not None else block.self_attn.attention
