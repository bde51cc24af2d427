"""The committed llada-kv zoo model (key-value recall, 514-token prompts) and the trainer's kv option."""

from __future__ import annotations

import json

import torch

from diffaccel import zoo
from diffaccel.dllm.loading import load_llada
from diffaccel.dllm.tasks.kv import KeyValueTask
from diffaccel.dllm.train_recall import main as train_main
from diffaccel.dllm.training import stepwise_rows_right
from diffaccel.dllm.zoo import KV_ZOO_NAME, load_llada_kv, weights_folder
from diffaccel.zoo.weights_io import sha256_of

SUBSET = 16  # rows of the recorded held-out set decoded here (the manifest covers all of them)


def _manifest() -> dict:
    return json.loads((weights_folder(KV_ZOO_NAME) / "manifest.json").read_text())


def test_committed_weights_match_their_manifest_and_the_task_is_long():
    folder, manifest = weights_folder(KV_ZOO_NAME), _manifest()
    assert manifest["sha256"]["model.safetensors"] == sha256_of(folder / "model.safetensors")
    assert manifest["command"].startswith("python -m diffaccel.dllm.train_recall --task kv")
    assert {"seed", "train_time_s", "final_loss", "eval"} <= set(manifest)
    pipe = zoo.load(KV_ZOO_NAME)
    assert pipe.task == KeyValueTask(n_records=240, gen_length=32, n_keys=256, n_values=256)
    assert (pipe.task.prompt_length, pipe.task.gen_length) == (514, 32)
    assert manifest["eval"]["exact_match_stepwise_block32"] >= 0.95  # the bar the model was trained for
    # the hub-format folder loads through the plain checkpoint loader as well
    plain = load_llada(folder)
    for name, tensor in pipe.model.state_dict().items():
        assert torch.equal(plain.state_dict()[name], tensor)


def test_zoo_model_reproduces_its_manifest_rows_on_a_held_out_subset():
    pipe, manifest = zoo.load(KV_ZOO_NAME), _manifest()
    evaluation = manifest["eval"]
    prompts, answers = pipe.task.held_out(evaluation["held_out_count"], seed=evaluation["held_out_seed"])
    right = stepwise_rows_right(pipe.model, prompts[:SUBSET], answers[:SUBSET], pipe.task, 32, pipe.mask_id)
    wrong = {row for row in evaluation["wrong_rows_stepwise_block32"] if row < SUBSET}
    assert set(right.logical_not().nonzero().flatten().tolist()) == wrong


def test_zoo_pipeline_answers_a_text_prompt():
    pipe = zoo.load(KV_ZOO_NAME)
    task = pipe.task
    prompts, answers = task.held_out(1, seed=5)
    text = task.render(prompts[0, 1:])
    assert pipe.tokenizer(text)["input_ids"].tolist() == prompts.tolist()
    out = pipe([text])
    assert out.texts == [task.render(answers[0])]


def test_kv_training_writes_a_loadable_zoo_folder(tmp_path):
    manifest = train_main(
        [
            *["--task", "kv", "--n-records", "12", "--gen-length", "4", "--n-keys", "16", "--n-values", "8"],
            *["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--ff", "32", "--batch-size", "4"],
            *["--steps", "3", "--warmup", "1", "--curriculum-start", "3", "--eval-count", "4"],
            *["--output", str(tmp_path / KV_ZOO_NAME)],
        ]
    )
    assert manifest["name"] == KV_ZOO_NAME and manifest["steps_done"] == 3
    assert manifest["sha256"]["model.safetensors"] == sha256_of(tmp_path / KV_ZOO_NAME / "model.safetensors")
    assert set(manifest["eval"]) >= {"exact_match_stepwise_block4", "wrong_rows_stepwise_block4"}
    pipe = load_llada_kv(folder=tmp_path / KV_ZOO_NAME)
    assert pipe.task == KeyValueTask(n_records=12, gen_length=4, n_keys=16, n_values=8)
    assert pipe.model.config.d_model == 16
