"""Configuration classes for the LLaDA and Dream architectures (ML-GSAI/LLaDA `configuration_llada.py`, Dream-org `configuration_dream.py`).

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

    Defaults are the LLaDA-8B values (the GSAI-ML/LLaDA-8B-Instruct config). ``embedding_size`` is the number of rows of ``wte``
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
    scale_logits: bool = False
    input_emb_norm: bool = False
    rope_full_precision: bool = True
    # ``rope=False``: learned absolute position embeddings (``transformer.wpe``, ``max_sequence_length`` rows)
    # added to the token embeddings instead of RoPE, as LLaDA's (OLMo's) model builds when neither ``rope``
    # nor ``alibi`` is set. No public LLaDA checkpoint uses it; the zoo's ``llada-kv`` does (its README row).
    rope: bool = True

    model_type: str = field(default="llada", init=False)

    def __post_init__(self) -> None:
        _check_shape(
            self,
            ("d_model", "n_heads", "n_kv_heads", "n_layers", "mlp_hidden_size", "vocab_size"),
            "d_model",
            "n_heads",
            "n_kv_heads",
        )
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
        """Build from a hub ``config.json`` (the fields of LLaDA's ``ModelConfig``).

        Every field that changes the computation is either implemented (shape, RoPE or learned positions
        (``rope``), norms' epsilon, ``scale_logits``, ``input_emb_norm``, ``rope_full_precision``) or refused with an error naming
        it (:data:`LLADA_REFUSED`); fields without effect at inference (dropouts, initialisation,
        ``flash_attention``, ``precision``, ``block_group_size``, ``use_cache``) are ignored. A hub
        config without BOS / end-of-turn ids gets the LLaDA tokenizer's (126080 / 126348) when its
        mask id is LLaDA's, else none.
        """
        for name, (allowed, why) in LLADA_REFUSED.items():
            if name in raw and raw[name] not in allowed:
                raise NotImplementedError(
                    f"LLaDA config {name}={raw[name]!r} is not supported ({why}); "
                    f"supported: {', '.join(map(repr, allowed))}"
                )
        for name in ("d_model", "n_heads", "n_layers", "vocab_size"):
            if name not in raw:
                raise KeyError(f"LLaDA config.json lacks {name!r} (is this a LLaDA hub config?)")
        n_heads = raw["n_heads"]
        n_kv_heads = 1 if raw.get("multi_query_attention") else (raw.get("n_kv_heads") or n_heads)
        mlp_hidden = raw.get("mlp_hidden_size") or raw.get("mlp_ratio", 4) * raw["d_model"]
        mask_id = raw.get("mask_token_id", 126336)
        llada_tokenizer = mask_id == LLADA_MASK_ID
        return cls(
            d_model=raw["d_model"],
            n_heads=n_heads,
            n_kv_heads=n_kv_heads,
            n_layers=raw["n_layers"],
            mlp_hidden_size=mlp_hidden,
            vocab_size=raw["vocab_size"],
            embedding_size=raw.get("embedding_size"),
            max_sequence_length=raw.get("max_sequence_length", 1024),
            rope_theta=float(raw.get("rope_theta", 10000.0)),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5)),
            mask_token_id=mask_id,
            eos_token_id=raw.get("eos_token_id", 126081 if llada_tokenizer else None),
            bos_token_id=raw.get("bos_token_id", LLADA_BOS_ID if llada_tokenizer else None),
            eot_token_id=raw.get("eot_token_id", LLADA_EOT_ID if llada_tokenizer else None),
            pad_token_id=raw.get("pad_token_id"),
            scale_logits=bool(raw.get("scale_logits", False)),
            input_emb_norm=bool(raw.get("input_emb_norm", False)),
            rope_full_precision=bool(raw.get("rope_full_precision", True)),
            rope=bool(raw.get("rope", True)),
        )

    def to_hf_dict(self) -> dict[str, Any]:
        """A hub ``config.json``: every field LLaDA's own ``LLaDAConfig`` reads, so the official model
        class builds exactly this architecture from it (its defaults differ from LLaDA-8B)."""
        return {
            "activation_type": "silu",
            "alibi": False,
            "alibi_bias_max": 8.0,
            "architectures": ["LLaDAModelLM"],
            "attention_dropout": 0.0,
            "attention_layer_norm": False,
            "attention_layer_norm_with_affine": True,
            "auto_map": {
                "AutoConfig": "configuration_llada.LLaDAConfig",
                "AutoModel": "modeling_llada.LLaDAModelLM",
                "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
            },
            "bias_for_layer_norm": False,
            "block_group_size": 1,
            "block_type": "llama",
            "clip_qkv": None,
            "d_model": self.d_model,
            "embedding_dropout": 0.0,
            "embedding_size": self.num_embeddings,
            "eos_token_id": self.eos_token_id,
            "flash_attention": False,
            "include_bias": False,
            "include_qkv_bias": False,
            "init_cutoff_factor": None,
            "init_device": "meta",
            "init_fn": "mitchell",
            "init_std": 0.02,
            "input_emb_norm": self.input_emb_norm,
            "layer_norm_type": "rms",
            "layer_norm_with_affine": True,
            "mask_token_id": self.mask_token_id,
            "max_sequence_length": self.max_sequence_length,
            "mlp_hidden_size": self.mlp_hidden_size,
            "mlp_ratio": max(1, self.mlp_hidden_size // self.d_model),
            "model_type": "llada",
            "multi_query_attention": None,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "n_layers": self.n_layers,
            "pad_token_id": self.pad_token_id,
            "precision": "amp_bf16",
            "residual_dropout": 0.0,
            "rms_norm_eps": self.rms_norm_eps,
            "rope": self.rope,
            "rope_full_precision": self.rope_full_precision,
            "rope_theta": self.rope_theta,
            "scale_logits": self.scale_logits,
            "use_cache": False,
            "vocab_size": self.vocab_size,
            "weight_tying": False,
            "bos_token_id": self.bos_token_id,
            "eot_token_id": self.eot_token_id,
        }


LLADA_MASK_ID, LLADA_BOS_ID, LLADA_EOT_ID = 126336, 126080, 126348

#: LLaDA ``ModelConfig`` fields that change the computation and that our port does not implement:
#: field -> (values we accept, what the field would change).
LLADA_REFUSED: dict[str, tuple[tuple, str]] = {
    "block_type": (("llama",), "only the Llama-style block of the public checkpoints is ported"),
    "activation_type": (("silu",), "the Llama block computes silu(ff_proj(h)) * up_proj(h)"),
    "layer_norm_type": (("rms",), "only RMSNorm is ported"),
    "layer_norm_with_affine": ((True,), "norms without a weight"),
    "bias_for_layer_norm": ((False, None), "norms with a bias"),
    "attention_layer_norm": ((False,), "query/key layer norms"),
    "include_bias": ((False,), "biased linear layers"),
    "include_qkv_bias": ((False,), "biased q/k/v projections"),
    "alibi": ((False,), "ALiBi attention bias"),
    "weight_tying": ((False,), "an output head tied to the embedding"),
    "clip_qkv": ((None,), "clipping of q/k/v activations"),
}


@dataclass
class DreamConfig(_DictConfig):
    """Shape and special tokens of a Dream-architecture (Qwen2-style, shifted-logit) diffusion LM.

    Defaults are the Dream-v0-7B values (the Dream-org/Dream-v0-Instruct-7B config).
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
        _check_shape(
            self,
            (
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "vocab_size",
            ),
            "hidden_size",
            "num_attention_heads",
            "num_key_value_heads",
        )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_hf_dict(cls, raw: dict[str, Any]) -> DreamConfig:
        """Build from a hub ``config.json`` (the fields of Dream's ``DreamConfig``, Qwen2-style).

        Fields that change the computation and are not ported raise (:data:`DREAM_REFUSED`)."""
        for name, (allowed, why) in DREAM_REFUSED.items():
            if name in raw and raw[name] not in allowed:
                raise NotImplementedError(
                    f"Dream config {name}={raw[name]!r} is not supported ({why}); "
                    f"supported: {', '.join(map(repr, allowed))}"
                )
        return cls(**{k: v for k, v in raw.items() if k in cls.field_names() and v is not None})

    def to_hf_dict(self) -> dict[str, Any]:
        """A hub ``config.json`` with the fields of Dream-org/Dream-v0-Instruct-7B's: everything Dream's own
        ``DreamConfig`` reads, plus the transformers version its remote code is written for."""
        return {
            "architectures": ["DreamModel"],
            "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
            "attention_dropout": 0.0,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "hidden_act": "silu",
            "hidden_size": self.hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "mask_token_id": self.mask_token_id,
            "max_position_embeddings": self.max_position_embeddings,
            "max_window_layers": self.num_hidden_layers,
            "model_type": "Dream",
            "num_attention_heads": self.num_attention_heads,
            "num_hidden_layers": self.num_hidden_layers,
            "num_key_value_heads": self.num_key_value_heads,
            "pad_token_id": self.pad_token_id,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_scaling": None,
            "rope_theta": self.rope_theta,
            "sliding_window": None,
            "tie_word_embeddings": self.tie_word_embeddings,
            "transformers_version": DREAM_TRANSFORMERS_VERSION,
            "use_cache": False,
            "use_sliding_window": False,
            "vocab_size": self.vocab_size,
        }


#: transformers version of Dream's published checkpoints and README (its remote code targets it)
DREAM_TRANSFORMERS_VERSION = "4.46.2"

#: Dream (Qwen2-style) config fields that change the computation and are not ported.
DREAM_REFUSED: dict[str, tuple[tuple, str]] = {
    "rope_scaling": ((None,), "scaled RoPE"),
    "hidden_act": (("silu",), "the MLP computes silu(gate_proj(h)) * up_proj(h)"),
    "use_sliding_window": ((False,), "sliding-window attention"),
}
