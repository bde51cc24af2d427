"""Configuration classes for the LLaDA and Dream architectures (the `config.json` of GSAI-ML/LLaDA-8B and Dream-org/Dream-v0).

The field names follow our own conventions; ``from_hf_dict`` maps the public ``config.json`` of the
official checkpoints (``GSAI-ML/LLaDA-8B-Instruct``, ``Dream-org/Dream-v0-Instruct-7B``) onto them so
a real checkpoint directory can be loaded without the authors' remote code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _check_shape(config, sizes: tuple[str, ...], width: str, heads: str, kv_heads: str) -> None:
    """The named ``sizes`` are positive integers, the model ``width`` splits into ``heads``, and the
    query heads into groups sharing ``kv_heads`` key/value heads (field names differ per family)."""
    for name in sizes:
        value = getattr(config, name)
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    w, h, kv = getattr(config, width), getattr(config, heads), getattr(config, kv_heads)
    if w % h:
        raise ValueError(f"{width}={w} is not divisible by {heads}={h}")
    if h % kv:
        raise ValueError(f"{heads}={h} is not a multiple of {kv_heads}={kv}")


class _DictConfig:
    """``to_dict`` / ``from_dict`` of the architecture configs: the keys are the dataclass fields."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        """The fields a constructor accepts (``model_type`` is fixed per class)."""
        return {f.name for f in dataclasses.fields(cls) if f.init}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]):
        """Rebuild from :meth:`to_dict` output; unknown keys are ignored."""
        return cls(**{k: v for k, v in raw.items() if k in cls.field_names()})


@dataclass
class LLaDAConfig(_DictConfig):
    """Shape and special tokens of a LLaDA-architecture masked diffusion LM.

    Defaults are the LLaDA-8B values (GSAI-ML/LLaDA-8B-Instruct `config.json`). ``embedding_size`` is the number of rows of ``wte``
    and of the output head (LLaDA pads the vocabulary to a multiple of 128).
    """

    d_model: int = 4096
    n_heads: int = 32
    n_kv_heads: int = 32
    n_layers: int = 32
    mlp_hidden_size: int = 12288
    vocab_size: int = 126464
    embedding_size: int | None = 126464
    max_sequence_length: int = 4096
    rope_theta: float = 500000.0
    rms_norm_eps: float = 1e-5
    include_bias: bool = False
    weight_tying: bool = False
    mask_token_id: int = 126336
    eos_token_id: int = 126081
    bos_token_id: int | None = 126080
    eot_token_id: int | None = 126348
    pad_token_id: int | None = 126081

    model_type: str = field(default="llada", init=False)

    def __post_init__(self) -> None:
        _check_shape(self, ("d_model", "n_heads", "n_kv_heads", "n_layers", "mlp_hidden_size", "vocab_size"),
                     "d_model", "n_heads", "n_kv_heads")
        if self.weight_tying:
            raise NotImplementedError("weight_tying=True is not used by any public LLaDA checkpoint")
        if self.include_bias:
            raise NotImplementedError("include_bias=True is not used by any public LLaDA checkpoint")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def num_embeddings(self) -> int:
        return self.embedding_size or self.vocab_size

    @classmethod
    def from_hf_dict(cls, raw: dict[str, Any]) -> LLaDAConfig:
        """Build from the checkpoint's ``config.json`` contents; unsupported variants raise."""
        block_type = raw.get("block_type", "llama")
        if block_type not in ("llama", "sequential_llama"):
            raise NotImplementedError(f"LLaDA block_type={block_type!r} is not supported (only 'llama')")
        if raw.get("activation_type", "silu") not in ("silu", "swiglu"):
            raise NotImplementedError(f"activation_type={raw.get('activation_type')!r} is not supported")
        if raw.get("layer_norm_type", "rms") not in ("rms",):
            raise NotImplementedError(f"layer_norm_type={raw.get('layer_norm_type')!r} is not supported")
        if not raw.get("rope", True):
            raise NotImplementedError("LLaDA checkpoints without RoPE are not supported")
        n_heads = raw["n_heads"]
        mlp_hidden = raw.get("mlp_hidden_size") or raw["mlp_ratio"] * raw["d_model"]
        return cls(
            d_model=raw["d_model"],
            n_heads=n_heads,
            n_kv_heads=raw.get("n_kv_heads") or n_heads,
            n_layers=raw["n_layers"],
            mlp_hidden_size=mlp_hidden,
            vocab_size=raw["vocab_size"],
            embedding_size=raw.get("embedding_size"),
            max_sequence_length=raw.get("max_sequence_length", 4096),
            rope_theta=float(raw.get("rope_theta", 10000.0)),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
            include_bias=bool(raw.get("include_bias", False)),
            weight_tying=bool(raw.get("weight_tying", False)),
            mask_token_id=raw.get("mask_token_id", 126336),
            eos_token_id=raw.get("eos_token_id", 126081),
            bos_token_id=raw.get("bos_token_id"),
            eot_token_id=raw.get("eot_token_id", None),
            pad_token_id=raw.get("pad_token_id"),
        )


@dataclass
class DreamConfig(_DictConfig):
    """Shape and special tokens of a Dream-architecture (Qwen2-style, shifted-logit) diffusion LM.

    Defaults are the Dream-v0-7B values (Dream-org/Dream-v0-Instruct-7B `config.json`).
    """

    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    vocab_size: int = 152064
    max_position_embeddings: int = 131072
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    mask_token_id: int = 151666
    pad_token_id: int = 151643
    bos_token_id: int = 151643
    eos_token_id: int = 151643

    model_type: str = field(default="Dream", init=False)

    def __post_init__(self) -> None:
        _check_shape(self, ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                            "num_key_value_heads", "vocab_size"),
                     "hidden_size", "num_attention_heads", "num_key_value_heads")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_hf_dict(cls, raw: dict[str, Any]) -> DreamConfig:
        if raw.get("rope_scaling"):
            raise NotImplementedError(f"rope_scaling={raw['rope_scaling']!r} is not supported")
        if raw.get("hidden_act", "silu") != "silu":
            raise NotImplementedError(f"hidden_act={raw.get('hidden_act')!r} is not supported")
        return cls(**{k: v for k, v in raw.items() if k in cls.field_names() and v is not None})
