"""LLaDA-architecture masked diffusion LM in plain PyTorch (LLaDA-8B's `modeling_llada.py`).

Module and parameter names mirror the public checkpoints (``GSAI-ML/LLaDA-8B-Instruct``):
``model.transformer.wte``, ``model.transformer.blocks.{i}.{attn_norm,q_proj,k_proj,v_proj,attn_out,
ff_norm,ff_proj,up_proj,ff_out}``, ``model.transformer.ln_f``, ``model.transformer.ff_out``, so the
official safetensors load with :func:`diffaccel.dllm.loading.load_llada` and no remote code.
The logit at position ``i`` predicts the token at position ``i`` (no shift).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import BidirectionalAttention, RMSNorm, project_and_attend
from .config import LLaDAConfig
from .model_base import DiffusionLM, logits_window, run_blocks
from .outputs import DiffusionLMOutput
from .rope import compute_dtype, rope_cos_sin


class LLaDALlamaBlock(nn.Module):
    """Pre-norm Llama-style block: bias-free q/k/v/attn_out, SwiGLU via ff_proj/up_proj/ff_out."""

    def __init__(self, config: LLaDAConfig, layer_index: int) -> None:
        super().__init__()
        d, hd = config.d_model, config.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, hd
        self.attn_norm = RMSNorm(d, config.rms_norm_eps)
        self.q_proj = nn.Linear(d, config.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(d, config.n_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, config.n_kv_heads * hd, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.attention = BidirectionalAttention(layer_index)
        self.ff_norm = RMSNorm(d, config.rms_norm_eps)
        self.ff_proj = nn.Linear(d, config.mlp_hidden_size, bias=False)
        self.up_proj = nn.Linear(d, config.mlp_hidden_size, bias=False)
        self.ff_out = nn.Linear(config.mlp_hidden_size, d, bias=False)

    def forward(self, x, cos, sin, positions, key_padding_mask=None, rows=None):
        """``rows``: only those positions' outputs (see :func:`~diffaccel.dllm.model_base.run_blocks`)."""
        h = self.attn_norm(x)
        att = project_and_attend(self, h, cos, sin, positions, key_padding_mask, rows)
        x = (x if rows is None else x[:, rows]) + self.attn_out(att)
        h = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))


class LLaDAModel(nn.Module):
    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.num_embeddings, config.d_model),
                "blocks": nn.ModuleList(LLaDALlamaBlock(config, i) for i in range(config.n_layers)),
                "ln_f": RMSNorm(config.d_model, config.rms_norm_eps),
                "ff_out": nn.Linear(config.d_model, config.num_embeddings, bias=False),
            }
        )
        if not config.rope:  # LLaDA's ``rope=False`` (no ALiBi either): learned absolute positions
            self.transformer["wpe"] = nn.Embedding(config.max_sequence_length, config.d_model)

    def forward(
        self, input_ids, attention_mask=None, position_ids=None, decode_step=None, logits_range=None
    ) -> DiffusionLMOutput:
        """The whole computation (embedding to logits). It lives in this inner module so that hooks on
        it (KV-cache subset forwards) sit inside the diffaccel engine's hook on the outer model."""
        t = self.transformer
        b, l = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(l, device=input_ids.device).expand(b, l)
        key_padding_mask = None if attention_mask is None else attention_mask.to(torch.bool)
        config = self.config
        weight_dtype = t["wte"].weight.dtype
        dtype = compute_dtype(weight_dtype) if config.rope_full_precision else weight_dtype
        x = t["wte"](input_ids)
        if config.input_emb_norm:  # LLaDA's ``input_emb_norm``: embeddings scaled by sqrt(d_model)
            x = x * (config.d_model**0.5)
        if config.rope:
            cos, sin = rope_cos_sin(position_ids, config.head_dim, config.rope_theta, dtype)
        else:  # after the scaling, as LLaDA's model adds ``wpe``; positions are the true ones under caches
            self.check_positions(position_ids)
            cos = sin = None
            x = t["wpe"](position_ids) + x
        x, keep = run_blocks(t["blocks"], x, cos, sin, position_ids, key_padding_mask, logits_window(logits_range, l))
        logits = t["ff_out"](t["ln_f"](x))[:, keep]
        if config.scale_logits:  # LLaDA's ``scale_logits``: logits divided by sqrt(d_model)
            logits = logits * (1 / math.sqrt(config.d_model))
        return DiffusionLMOutput(logits=logits)

    def check_positions(self, position_ids: torch.Tensor) -> None:
        """Learned positions exist up to ``max_sequence_length``; past it the embedding lookup would fail
        with an index error, so say why."""
        top = int(position_ids.max())
        if top >= self.config.max_sequence_length:
            raise ValueError(
                f"position {top} is past this model's learned positions (max_sequence_length="
                f"{self.config.max_sequence_length}, rope=False): shorten the prompt or the answer"
            )


class LLaDAModelLM(DiffusionLM):
    """``logits = model(input_ids, attention_mask=None, position_ids=None).logits`` ``[B, L, V]``.

    ``position_ids`` default to ``0..L-1``; pass the true positions when running a subset of a
    sequence (caches). ``attention_mask`` ``[B, L]`` (1 = real token) masks padded keys.
    ``logits_range=(lo, hi)`` [ours]: logits ``[B, hi - lo, V]`` of those positions only
    (:func:`~diffaccel.dllm.model_base.logits_window`).
    """

    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__()
        self.config = config
        self.model = LLaDAModel(config)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.transformer["blocks"]
