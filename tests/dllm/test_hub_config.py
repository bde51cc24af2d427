"""Hub-format configs: zoo folders and checkpoint folders load through the same loader, every config
field that changes the computation is implemented or refused."""

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from diffaccel.dllm import load_dream, load_llada
from diffaccel.dllm.config import DREAM_REFUSED, LLADA_REFUSED, DreamConfig, LLaDAConfig
from diffaccel.dllm.dream import DreamModel
from diffaccel.dllm.hub_config import read_task, write_hub_config
from diffaccel.dllm.llada import LLaDAModelLM
from diffaccel.dllm.loading import load_dllm
from diffaccel.dllm.zoo import load_llada_addition, weights_folder

from .conftest import tiny_dream, tiny_llada


def _checkpoint(folder, model):
    write_hub_config(folder, model.config)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


def test_zoo_folder_is_a_hub_checkpoint_folder():
    folder = weights_folder()
    raw = json.loads((folder / "config.json").read_text())
    assert raw["model_type"] == "llada" and raw["architectures"] == ["LLaDAModelLM"]
    for key in (
        "d_model",
        "n_heads",
        "n_kv_heads",
        "n_layers",
        "mlp_hidden_size",
        "block_type",
        "rope",
        "layer_norm_type",
        "activation_type",
        "scale_logits",
        "input_emb_norm",
        "weight_tying",
    ):
        assert key in raw  # the official config class would otherwise fall back to its own defaults
    model = load_llada(folder)  # the checkpoint loader, on the zoo folder
    pipe = load_llada_addition()
    ids = torch.randint(0, 12, (3, 19), generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(ids).logits, pipe.model(ids).logits)
    assert read_task(folder)["n_digits"] == 4


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_one_loader_reads_hub_folders_of_either_family(tmp_path, family):
    model = tiny_llada(2, dtype=torch.float32) if family == "llada" else tiny_dream(2, dtype=torch.float32)
    _checkpoint(tmp_path, model)
    loaded = load_dllm(tmp_path)
    assert type(loaded) is type(model) and loaded.config == model.config
    ids = torch.randint(0, 14, (2, 9))
    assert torch.equal(loaded(ids).logits, model(ids).logits)
    (load_llada if family == "llada" else load_dream)(tmp_path)
    with pytest.raises(ValueError, match="not"):
        (load_dream if family == "llada" else load_llada)(tmp_path)


def test_config_round_trips_through_the_hub_dict():
    for config in (tiny_llada(1).config, LLaDAConfig(), tiny_dream(1).config, DreamConfig()):
        assert type(config).from_hf_dict(config.to_hf_dict()) == config


def test_llada_hub_config_gets_the_tokenizer_special_ids():
    raw = LLaDAConfig().to_hf_dict()
    del raw["bos_token_id"], raw["eot_token_id"]  # as in GSAI-ML/LLaDA-8B-Instruct's config.json
    config = LLaDAConfig.from_hf_dict(raw)
    assert (config.bos_token_id, config.eot_token_id, config.eos_token_id) == (126080, 126348, 126081)
    other = LLaDAConfig.from_hf_dict({**raw, "mask_token_id": 5})  # another tokenizer: no guessed ids
    assert other.bos_token_id is None and other.eot_token_id is None


def _variant(base: LLaDAModelLM, **changes) -> LLaDAModelLM:
    config = LLaDAConfig.from_hf_dict({**base.config.to_hf_dict(), **changes})
    model = LLaDAModelLM(config).to(torch.float64)
    model.load_state_dict(base.state_dict())
    return model.eval()


def test_scale_logits_divides_the_logits_by_sqrt_d_model():
    base = tiny_llada(2)
    ids = torch.randint(0, 14, (2, 9))
    scaled = _variant(base, scale_logits=True)(ids).logits
    torch.testing.assert_close(scaled, base(ids).logits / math.sqrt(base.config.d_model), rtol=1e-12, atol=1e-12)


def test_input_emb_norm_scales_the_embeddings_by_sqrt_d_model():
    base = tiny_llada(2)
    ids = torch.randint(0, 14, (2, 9))
    reference = _variant(base)
    with torch.no_grad():  # independent route: the same scaling folded into the embedding table
        reference.model.transformer["wte"].weight.mul_(math.sqrt(base.config.d_model))
    torch.testing.assert_close(
        _variant(base, input_emb_norm=True)(ids).logits, reference(ids).logits, rtol=1e-10, atol=1e-10
    )


def test_rope_in_model_precision_only_changes_low_precision_models():
    base = tiny_llada(1, dtype=torch.float32)
    ids = torch.randint(0, 14, (2, 9))
    variant = LLaDAModelLM(LLaDAConfig.from_hf_dict({**base.config.to_hf_dict(), "rope_full_precision": False}))
    variant.load_state_dict(base.state_dict())
    assert torch.equal(variant.eval()(ids).logits, base(ids).logits)  # float32 weights: float32 RoPE either way


def _plain_forward(model: LLaDAModelLM, ids: torch.Tensor) -> torch.Tensor:
    """An independent transcription of a LLaDA forward without RoPE: token plus position embedding, then
    pre-norm blocks of unrotated bidirectional attention and SwiGLU, written out with plain tensor ops."""
    t, c = model.model.transformer, model.config
    nh, hd = c.n_heads, c.head_dim

    def norm(x, weight):
        return weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c.rms_norm_eps)

    def heads(x):
        return x.view(x.shape[0], x.shape[1], nh, hd).transpose(1, 2)

    x = t["wte"].weight[ids] + t["wpe"].weight[: ids.shape[1]]
    for block in t["blocks"]:
        h = norm(x, block.attn_norm.weight)
        q, k, v = (heads(h @ lin.weight.T) for lin in (block.q_proj, block.k_proj, block.v_proj))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1) @ v
        x = x + att.transpose(1, 2).reshape(x.shape) @ block.attn_out.weight.T
        h = norm(x, block.ff_norm.weight)
        gate = h @ block.ff_proj.weight.T
        x = x + (gate * torch.sigmoid(gate) * (h @ block.up_proj.weight.T)) @ block.ff_out.weight.T
    return norm(x, t["ln_f"].weight) @ t["ff_out"].weight.T


def test_rope_false_adds_learned_positions_instead_of_rotating():
    model = tiny_llada(2, rope=False)
    assert "rope" not in LLADA_REFUSED and model.config.to_hf_dict()["rope"] is False
    assert model.model.transformer["wpe"].weight.shape == (64, model.config.d_model)
    ids = torch.randint(0, 14, (2, 9))
    torch.testing.assert_close(model(ids).logits, _plain_forward(model, ids), rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="learned positions"):
        model(torch.randint(0, 14, (1, 65)))


def test_rope_false_checkpoint_loads_through_the_hub_loader(tmp_path):
    model = tiny_llada(2, rope=False)
    _checkpoint(tmp_path, model)
    loaded = load_llada(tmp_path, dtype=torch.float64)
    assert loaded.config.rope is False
    ids = torch.randint(0, 14, (2, 9))
    assert torch.equal(loaded(ids).logits, model(ids).logits)


@pytest.mark.parametrize("rope", [True, False])
def test_a_loaded_float64_checkpoint_is_bit_identical_to_the_saved_model(tmp_path, rope):
    """safetensors hands out tensors at unaligned addresses, where CPU kernels round differently in the last bits:
    the loader copies those onto 64-byte boundaries, so the loaded model equals the saved one bit for bit."""
    model = tiny_llada(2, rope=rope)
    _checkpoint(tmp_path, model)
    loaded = load_llada(tmp_path, dtype=torch.float64)
    assert all(p.data_ptr() % 64 == 0 for p in loaded.parameters())
    ids = torch.randint(0, 14, (3, 11))
    assert torch.equal(loaded(ids).logits, model(ids).logits)


@pytest.mark.parametrize("field", sorted(LLADA_REFUSED))
def test_every_unsupported_llada_field_raises(field):
    raw = LLaDAConfig().to_hf_dict()
    allowed = LLADA_REFUSED[field][0]
    bad = {bool: lambda v: not v, type(None): lambda v: 8.0, str: lambda v: "gelu" if v != "gelu" else "relu"}
    raw[field] = bad[type(allowed[0])](allowed[0])
    with pytest.raises(NotImplementedError, match=field):
        LLaDAConfig.from_hf_dict(raw)


@pytest.mark.parametrize(
    "field, value",
    [("rope_scaling", {"type": "linear", "factor": 2.0}), ("hidden_act", "gelu"), ("use_sliding_window", True)],
)
def test_every_unsupported_dream_field_raises(field, value):
    assert field in DREAM_REFUSED
    with pytest.raises(NotImplementedError, match=field):
        DreamConfig.from_hf_dict({**DreamConfig().to_hf_dict(), field: value})


def test_multi_query_attention_maps_to_one_kv_head():
    raw = {**tiny_llada(1).config.to_hf_dict(), "multi_query_attention": True}
    assert LLaDAConfig.from_hf_dict(raw).n_kv_heads == 1


def test_dream_model_from_hub_dict_is_built(tmp_path):
    config = DreamConfig.from_hf_dict(tiny_dream(1).config.to_hf_dict())
    assert isinstance(DreamModel(config), DreamModel)
