"""The committed llada-addition zoo model and the script that trains it."""

import json

import pytest
import torch

from diffaccel import zoo
from diffaccel.dllm.sampler import llada_generate
from diffaccel.dllm.train_addition import main as train_main
from diffaccel.dllm.zoo import load_llada_addition, weights_folder
from diffaccel.zoo.weights_io import sha256_of


def test_committed_weights_match_their_manifest():
    folder = weights_folder()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sha256"]["model.safetensors"] == sha256_of(folder / "model.safetensors")
    assert manifest["command"].startswith("python -m diffaccel.dllm.train_addition")
    assert {"seed", "train_time_s", "final_loss", "eval"} <= set(manifest)


def test_zoo_model_reproduces_its_manifest_accuracy_with_stepwise_decoding():
    pipe = zoo.load("llada-addition")
    manifest = json.loads((weights_folder() / "manifest.json").read_text())
    prompts, answers = pipe.task.held_out(manifest["eval"]["held_out_count"], seed=manifest["eval"]["held_out_seed"])
    g = pipe.task.gen_length
    out = llada_generate(pipe.model, prompts, steps=g, gen_length=g, block_length=g, mask_id=pipe.mask_id)
    accuracy = (out[:, prompts.shape[1] :] == answers).all(1).float().mean().item()
    assert accuracy == manifest["eval"][f"exact_match_stepwise_block{g}"]
    assert accuracy >= 0.99  # the bar for the committed artifact (measured once, deterministic)


def test_zoo_pipeline_reads_text_prompts():
    pipe = load_llada_addition()
    out = pipe(["1234+5678", "0999+0001"])
    assert out.texts == ["06912", "01000"]


def test_training_script_writes_loadable_weights_and_a_manifest(tmp_path):
    manifest = train_main(
        [
            "--steps",
            "3",
            "--eval-count",
            "4",
            "--d-model",
            "16",
            "--n-layers",
            "1",
            "--n-heads",
            "2",
            "--ff",
            "32",
            "--batch-size",
            "8",
            "--warmup",
            "1",
            "--output",
            str(tmp_path),
        ]
    )
    assert manifest["sha256"]["model.safetensors"] == sha256_of(tmp_path / "model.safetensors")
    assert manifest["seed"] == 0 and manifest["hyperparameters"]["steps"] == 3
    pipe = load_llada_addition(folder=tmp_path)
    assert pipe.model.config.d_model == 16
    assert torch.isfinite(torch.tensor(manifest["final_loss"]))
    # --evaluate-only refuses weights its manifest does not describe
    manifest["sha256"]["model.safetensors"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="does not match the manifest"):
        train_main(["--evaluate-only", "--eval-count", "4", "--output", str(tmp_path)])
