"""Dream-architecture diffusion LM (Qwen2-style, GQA, shifted logits) in plain PyTorch (Dream-v0's `modeling_dream.py`).

Parameter names follow ``Dream-org/Dream-v0-Instruct-7B``: ``model.embed_tokens``,
``model.layers.{i}.{input_layernorm,post_attention_layernorm}``,
``model.layers.{i}.self_attn.{q,k,v,o}_proj`` (q/k/v with bias), ``model.layers.{i}.mlp.{gate,up,down}_proj``,
``model.norm``, ``lm_head``. The raw logit at position ``i`` predicts token ``i+1``; the Dream sampler
shifts them (Dream's `generation_utils.py`), the model does not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import BidirectionalAttention, RMSNorm, project_and_attend
from .config import DreamConfig
from .model_base import DiffusionLM, logits_window, run_blocks
from .outputs import DiffusionLMOutput
from .rope import compute_dtype, rope_cos_sin


class DreamAttention(nn.Module):
    def __init__(self, config: DreamConfig, layer_index: int) -> None:
        super().__init__()
        d, hd = config.hidden_size, config.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, hd
        self.q_proj = nn.Linear(d, self.n_heads * hd, bias=True)
        self.k_proj = nn.Linear(d, self.n_kv_heads * hd, bias=True)
        self.v_proj = nn.Linear(d, self.n_kv_heads * hd, bias=True)
        self.o_proj = nn.Linear(self.n_heads * hd, d, bias=False)
        self.attention = BidirectionalAttention(layer_index)

    def forward(self, x, cos, sin, positions, key_padding_mask=None, rows=None):
        return self.o_proj(project_and_attend(self, x, cos, sin, positions, key_padding_mask, rows))


class DreamMLP(nn.Module):
    def __init__(self, config: DreamConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DreamDecoderLayer(nn.Module):
    def __init__(self, config: DreamConfig, layer_index: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = DreamAttention(config, layer_index)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = DreamMLP(config)

    def forward(self, x, cos, sin, positions, key_padding_mask=None, rows=None):
        """``rows``: only those positions' outputs (see :func:`~diffaccel.dllm.model_base.run_blocks`)."""
        att = self.self_attn(self.input_layernorm(x), cos, sin, positions, key_padding_mask, rows)
        x = (x if rows is None else x[:, rows]) + att
        return x + self.mlp(self.post_attention_layernorm(x))


class DreamBaseModel(nn.Module):
    def __init__(self, config: DreamConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DreamDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.config = config

    def forward(
        self, input_ids, attention_mask=None, position_ids=None, decode_step=None, head=None, logits_range=None
    ):
        """Tokens to logits through ``head`` (the outer model's ``lm_head``, passed in because the public
        checkpoint keeps it outside this module). Keeping the whole computation here lets hooks on this
        inner module (KV-cache subset forwards) sit inside the diffaccel engine's hook on the outer model."""
        b, l = input_ids.shape
        key_padding_mask = None
        if attention_mask is not None:
            key_padding_mask = attention_mask.to(torch.bool)
            if position_ids is None:
                # Dream's sampler: tok_idx = cumsum(attn) - 1 with padding positions set to 1 (`generation_utils.py`)
                position_ids = attention_mask.long().cumsum(-1) - 1
                position_ids = position_ids.masked_fill(attention_mask == 0, 1)
        if position_ids is None:
            position_ids = torch.arange(l, device=input_ids.device).expand(b, l)
        dtype = compute_dtype(self.embed_tokens.weight.dtype)
        cos, sin = rope_cos_sin(position_ids, self.config.head_dim, self.config.rope_theta, dtype)
        x = self.embed_tokens(input_ids)
        x, keep = run_blocks(self.layers, x, cos, sin, position_ids, key_padding_mask, logits_window(logits_range, l))
        return DiffusionLMOutput(logits=head(self.norm(x))[:, keep])


class DreamModel(DiffusionLM):
    """``model(input_ids, attention_mask=None, position_ids=None).logits`` (unshifted, next-token).

    ``logits_range=(lo, hi)`` [ours]: raw logits of those positions only
    (:func:`~diffaccel.dllm.model_base.logits_window`)."""

    def __init__(self, config: DreamConfig) -> None:
        super().__init__()
        self.config = config
        self.model = DreamBaseModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.layers

    def body_arguments(self) -> dict:
        return {"head": self.lm_head}  # the public checkpoint keeps lm_head outside the body
