"""The committed dream-addition zoo model (Dream architecture, shifted logits): loading as a hub checkpoint,
its manifest's exact match, parity with the official sampler, and the lossless dLLM strategies on it."""

import json

import pytest
import torch
from safetensors.torch import save_file

from diffaccel import zoo
from diffaccel.dllm import load_dream
from diffaccel.dllm.dkv_cache import DKVCacheConfig
from diffaccel.dllm.dream import DreamModel
from diffaccel.dllm.hub_config import write_hub_config
from diffaccel.dllm.loading import load_dllm
from diffaccel.dllm.ssd import SSDConfig
from diffaccel.dllm.zoo import DREAM_ZOO_NAME, load_llada_addition, weights_folder
from diffaccel.zoo.weights_io import sha256_of

from .conftest import wrapped_run
from .reference_samplers import ref_dream_sample

#: the keys of Dream-org/Dream-v0-Instruct-7B's config.json
DREAM_V0_KEYS = {
    "architectures", "attention_dropout", "auto_map", "bos_token_id", "eos_token_id", "hidden_act", "hidden_size",
    "initializer_range", "intermediate_size", "mask_token_id", "max_position_embeddings", "max_window_layers",
    "model_type", "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "pad_token_id", "rms_norm_eps",
    "rope_scaling", "rope_theta", "sliding_window", "tie_word_embeddings", "torch_dtype", "transformers_version",
    "use_cache", "use_sliding_window", "vocab_size",
}  # fmt: skip


@pytest.fixture(scope="module")
def dream_pipe():
    return zoo.load("dream-addition")


@pytest.fixture(scope="module")
def manifest():
    return json.loads((weights_folder(DREAM_ZOO_NAME) / "manifest.json").read_text())


def test_zoo_folder_is_a_hub_dream_checkpoint_matching_its_manifest(dream_pipe, manifest, tmp_path):
    folder = weights_folder(DREAM_ZOO_NAME)
    assert manifest["sha256"]["model.safetensors"] == sha256_of(folder / "model.safetensors")
    assert manifest["command"].startswith("python -m diffaccel.dllm.train_addition --arch dream")
    assert {"seed", "train_time_s", "final_loss", "eval"} <= set(manifest)
    raw = json.loads((folder / "config.json").read_text())
    assert DREAM_V0_KEYS <= set(raw) and raw["model_type"] == "Dream" and raw["architectures"] == ["DreamModel"]
    assert raw["num_key_value_heads"] < raw["num_attention_heads"]  # GQA, as Dream-v0
    model = load_dllm(folder)  # the checkpoint loader, on the zoo folder
    assert type(model) is DreamModel and model.config == load_dream(folder).config
    # a hub-format folder written from scratch (config + safetensors, as a download) loads the same way
    write_hub_config(tmp_path, model.config)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    downloaded = load_dllm(tmp_path)
    ids, _ = dream_pipe.task.held_out(8, seed=0)
    logits = dream_pipe.model(ids).logits
    assert torch.equal(model(ids).logits, logits) and torch.equal(downloaded(ids).logits, logits)
    with pytest.raises(ValueError, match="dream"):  # the LLaDA twin's loader refuses the Dream folder
        load_llada_addition(folder=folder)


def test_zoo_model_reproduces_its_manifest_exact_match_on_a_subset(dream_pipe, manifest):
    """The first 256 of the manifest's held-out sums, stepwise: no more wrong answers than the manifest's rate
    allows over all of them (with the recorded 100 %, every one right)."""
    task, g, count = dream_pipe.task, dream_pipe.task.gen_length, manifest["eval"]["held_out_count"]
    prompts, answers = task.held_out(count, seed=manifest["eval"]["held_out_seed"])
    out = dream_pipe(input_ids=prompts[:256]).generated  # the pipeline's default: one token per step, one block
    wrong = 256 - int(task.exact_match(out, answers[:256]).sum())
    recorded = manifest["eval"][f"exact_match_stepwise_block{g}"]
    assert wrong <= round((1 - recorded) * count)
    assert recorded >= 0.99


def test_zoo_pipeline_reads_text_prompts(dream_pipe):
    assert dream_pipe(["1234+5678", "0999+0001"]).texts == ["06912", "01000"]


@pytest.mark.parametrize("schedule", ["stepwise", "dream_native"])
def test_decoding_the_zoo_model_equals_the_official_sampler_transcription(dream_pipe, schedule):
    prompts, _ = dream_pipe.task.held_out(64, seed=7)
    g = dream_pipe.task.gen_length
    for alg in ("maskgit_plus", "topk_margin", "entropy"):
        expected = ref_dream_sample(
            dream_pipe.model, prompts, g, g, alg, mask_id=dream_pipe.mask_id, one_per_step=schedule == "stepwise"
        )
        options = dict(gen_length=g, steps=g, alg=alg)
        if schedule == "dream_native":
            options["schedule"] = "dream_native"
        assert torch.equal(dream_pipe(input_ids=prompts, **options).sequences, expected), alg


@pytest.mark.parametrize("shift_type", ["un", "un_right", "right"])
def test_dkv_cache_refreshed_every_step_equals_no_cache_on_the_zoo_model(dream_pipe, shift_type):
    prompts, _ = dream_pipe.task.held_out(64, seed=3)
    g = dream_pipe.task.gen_length
    for block_length in (g, g // 2):
        expected = dream_pipe(input_ids=prompts, block_length=block_length).generated
        strategy = DKVCacheConfig(refresh_interval=1, shift_type=shift_type)
        assert torch.equal(wrapped_run(dream_pipe, strategy, prompts, block_length=block_length), expected)


@pytest.mark.parametrize("draft_length", [2, 4, 8])
def test_ssd_equals_stepwise_decoding_on_the_zoo_model(dream_pipe, draft_length):
    prompts, _ = dream_pipe.task.held_out(64, seed=4)
    g = dream_pipe.task.gen_length
    for block_length in (g, g // 2):
        expected = dream_pipe(input_ids=prompts, block_length=block_length).generated
        stepwise_forwards = dream_pipe.last_record.forward_calls
        got = wrapped_run(dream_pipe, SSDConfig(draft_length=draft_length), prompts, block_length=block_length)
        assert torch.equal(got, expected)
        assert dream_pipe.last_record.forward_calls < stepwise_forwards
