"""Model ports: checkpoint parameter names, an independent forward, loading from safetensors."""

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from diffaccel.dllm.config import DreamConfig, LLaDAConfig
from diffaccel.dllm.dream import DreamModel
from diffaccel.dllm.llada import LLaDAModelLM
from diffaccel.dllm.loading import load_dream, load_llada

from ..numerics import REORDERED_SUMS_ATOL, in_fresh_memory
from .conftest import tiny_dream, tiny_llada


def test_llada_parameter_names_match_the_public_checkpoint():
    model = tiny_llada(n_layers=2)
    expected = {"model.transformer.wte.weight", "model.transformer.ln_f.weight", "model.transformer.ff_out.weight"}
    for i in range(2):
        expected |= {
            f"model.transformer.blocks.{i}.{name}.weight"
            for name in (
                "attn_norm",
                "ff_norm",
                "q_proj",
                "k_proj",
                "v_proj",
                "attn_out",
                "ff_proj",
                "up_proj",
                "ff_out",
            )
        }
    assert set(model.state_dict()) == expected


def test_dream_parameter_names_match_the_public_checkpoint():
    model = tiny_dream(n_layers=1)
    expected = {
        "model.embed_tokens.weight",
        "model.norm.weight",
        "lm_head.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.0.post_attention_layernorm.weight",
        "model.layers.0.self_attn.o_proj.weight",
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.0.mlp.up_proj.weight",
        "model.layers.0.mlp.down_proj.weight",
    }
    expected |= {f"model.layers.0.self_attn.{p}_proj.{t}" for p in "qkv" for t in ("weight", "bias")}
    assert set(model.state_dict()) == expected


def _rope_complex(x, positions, theta):
    """RoPE written as a complex rotation of (x_i, x_{i+d/2}) pairs: independent of rotate_half."""
    d = x.shape[-1]
    freqs = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions[:, None].double() * freqs[None, :]
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2 :].double()) * torch.polar(
        torch.ones_like(angles), angles
    )
    return torch.cat([z.real, z.imag], dim=-1)


def _rms(x, w, eps):
    return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def _reference_llada_logits(model: LLaDAModelLM, ids: torch.Tensor) -> torch.Tensor:
    """LLaDA forward (`modeling_llada.py`) written from the equations with explicit loops over heads."""
    cfg, sd = model.config, {k: v.double() for k, v in model.state_dict().items()}
    p = "model.transformer."
    x = sd[p + "wte.weight"][ids[0]]
    positions = torch.arange(ids.shape[1])
    hd = cfg.head_dim
    for i in range(cfg.n_layers):
        b = f"{p}blocks.{i}."
        h = _rms(x, sd[b + "attn_norm.weight"], cfg.rms_norm_eps)
        q, k, v = h @ sd[b + "q_proj.weight"].T, h @ sd[b + "k_proj.weight"].T, h @ sd[b + "v_proj.weight"].T
        heads = []
        for head in range(cfg.n_heads):
            sl = slice(head * hd, (head + 1) * hd)
            qh, kh = (
                _rope_complex(q[:, sl], positions, cfg.rope_theta),
                _rope_complex(k[:, sl], positions, cfg.rope_theta),
            )
            heads.append(torch.softmax(qh @ kh.T / math.sqrt(hd), dim=-1) @ v[:, sl])
        x = x + torch.cat(heads, -1) @ sd[b + "attn_out.weight"].T
        h = _rms(x, sd[b + "ff_norm.weight"], cfg.rms_norm_eps)
        gate = h @ sd[b + "ff_proj.weight"].T
        x = x + (gate * torch.sigmoid(gate) * (h @ sd[b + "up_proj.weight"].T)) @ sd[b + "ff_out.weight"].T
    return (_rms(x, sd[p + "ln_f.weight"], cfg.rms_norm_eps) @ sd[p + "ff_out.weight"].T)[None]


def test_llada_forward_matches_an_independent_implementation():
    model = tiny_llada(n_layers=2)
    ids = torch.randint(0, 16, (1, 11))
    torch.testing.assert_close(model(ids).logits, _reference_llada_logits(model, ids), atol=1e-9, rtol=1e-9)


def test_dream_gqa_forward_matches_an_independent_implementation():
    model = tiny_dream(n_layers=1)
    cfg, sd = model.config, {k: v.double() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 30, (1, 9))
    positions, hd = torch.arange(9), cfg.head_dim
    x = sd["model.embed_tokens.weight"][ids[0]]
    b = "model.layers.0."
    h = _rms(x, sd[b + "input_layernorm.weight"], cfg.rms_norm_eps)
    proj = {n: h @ sd[f"{b}self_attn.{n}_proj.weight"].T + sd[f"{b}self_attn.{n}_proj.bias"] for n in "qkv"}
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    heads = []
    for head in range(cfg.num_attention_heads):
        kv = head // group
        qh = _rope_complex(proj["q"][:, head * hd : (head + 1) * hd], positions, cfg.rope_theta)
        kh = _rope_complex(proj["k"][:, kv * hd : (kv + 1) * hd], positions, cfg.rope_theta)
        heads.append(torch.softmax(qh @ kh.T / math.sqrt(hd), -1) @ proj["v"][:, kv * hd : (kv + 1) * hd])
    x = x + torch.cat(heads, -1) @ sd[b + "self_attn.o_proj.weight"].T
    h = _rms(x, sd[b + "post_attention_layernorm.weight"], cfg.rms_norm_eps)
    gate = h @ sd[b + "mlp.gate_proj.weight"].T
    x = x + (gate * torch.sigmoid(gate) * (h @ sd[b + "mlp.up_proj.weight"].T)) @ sd[b + "mlp.down_proj.weight"].T
    expected = _rms(x, sd["model.norm.weight"], cfg.rms_norm_eps) @ sd["lm_head.weight"].T
    torch.testing.assert_close(model(ids).logits[0], expected, atol=1e-9, rtol=1e-9)


def test_subset_forward_with_true_positions_matches_full_forward_on_one_layer_keys():
    """RoPE takes explicit positions: layer-0 keys of a token do not depend on which others are run."""
    model = tiny_llada(n_layers=1)
    ids = torch.randint(0, 16, (1, 10))
    block = model.blocks[0]
    captured = []
    handle = block.attention.register_forward_hook(
        lambda m, a, kw, out: captured.append(kw.get("positions", a[3] if len(a) > 3 else None)), with_kwargs=True
    )
    try:
        model(ids[:, [2, 5, 7]], position_ids=torch.tensor([[2, 5, 7]]))
    finally:
        handle.remove()
    assert captured[0].tolist() == [[2, 5, 7]]


def _hf_llada_config(model: LLaDAModelLM) -> dict:
    c = model.config
    return {
        "d_model": c.d_model,
        "n_heads": c.n_heads,
        "n_kv_heads": c.n_kv_heads,
        "n_layers": c.n_layers,
        "mlp_hidden_size": c.mlp_hidden_size,
        "vocab_size": c.vocab_size,
        "embedding_size": c.embedding_size,
        "rope_theta": c.rope_theta,
        "rms_norm_eps": c.rms_norm_eps,
        "mask_token_id": c.mask_token_id,
        "eos_token_id": c.eos_token_id,
        "block_type": "llama",
        "activation_type": "silu",
        "rope": True,
        "include_bias": False,
        "weight_tying": False,
        "model_type": "llada",
    }


@pytest.mark.parametrize("sharded", [False, True])
def test_load_llada_from_single_and_sharded_safetensors(tmp_path, sharded):
    model = tiny_llada(n_layers=2, dtype=torch.float32)
    (tmp_path / "config.json").write_text(json.dumps(_hf_llada_config(model)))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if sharded:
        names = sorted(state)
        shards = {
            "model-00001-of-00002.safetensors": names[: len(names) // 2],
            "model-00002-of-00002.safetensors": names[len(names) // 2 :],
        }
        for file, keys in shards.items():
            save_file({k: state[k] for k in keys}, str(tmp_path / file))
        index = {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
        (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    else:
        save_file(state, str(tmp_path / "model.safetensors"))
    loaded = load_llada(tmp_path, dtype=torch.float32)
    ids = torch.randint(0, 14, (2, 7))
    # as loaded, the weights are memory-mapped (unaligned): equal up to reordered sums; in fresh memory, the same
    # weights and the same computation: bit for bit (tests/numerics.py)
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=REORDERED_SUMS_ATOL)
    assert torch.equal(in_fresh_memory(loaded)(ids).logits, model(ids).logits)


def test_loader_rejects_mismatched_checkpoints(tmp_path):
    model = tiny_llada(n_layers=2, dtype=torch.float32)
    (tmp_path / "config.json").write_text(json.dumps(_hf_llada_config(model)))
    state = {k: v.contiguous() for k, v in model.state_dict().items() if "blocks.1.up_proj" not in k}
    state["model.transformer.extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="missing .*blocks.1.up_proj.*unexpected .*extra"):
        load_llada(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="only safetensors"):
        load_llada(tmp_path)


def test_load_dream_with_tied_embeddings(tmp_path):
    config = DreamConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=32,
        tie_word_embeddings=True,
        mask_token_id=30,
    )
    model = DreamModel(config).eval()
    raw = {k: v for k, v in config.to_dict().items() if k != "model_type"}
    (tmp_path / "config.json").write_text(json.dumps(raw | {"hidden_act": "silu", "rope_scaling": None}))
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(tmp_path / "model.safetensors"))
    loaded = load_dream(tmp_path)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    ids = torch.randint(0, 30, (1, 6))
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=REORDERED_SUMS_ATOL)
    assert torch.equal(in_fresh_memory(loaded)(ids).logits, model(ids).logits)  # as above


def test_config_rejects_unsupported_variants():
    with pytest.raises(NotImplementedError, match="block_type"):
        LLaDAConfig.from_hf_dict(
            {"d_model": 8, "n_heads": 2, "n_layers": 1, "vocab_size": 4, "mlp_ratio": 2, "block_type": "sequential"}
        )
    with pytest.raises(ValueError, match="divisible"):
        LLaDAConfig(d_model=10, n_heads=3)
