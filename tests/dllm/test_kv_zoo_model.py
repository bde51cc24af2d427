"""The trainer's kv option writes a zoo folder that the llada-kv loader reads."""

from __future__ import annotations

import torch

from diffaccel.dllm.tasks.kv import KeyValueTask
from diffaccel.dllm.train_recall import main as train_main
from diffaccel.dllm.zoo import KV_ZOO_NAME, load_llada_kv
from diffaccel.zoo.weights_io import sha256_of


def test_kv_training_writes_a_loadable_zoo_folder(tmp_path):
    manifest = train_main(
        [
            *["--task", "kv", "--n-records", "12", "--gen-length", "4", "--n-keys", "16", "--n-values", "8"],
            *["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--ff", "32", "--batch-size", "4"],
            *["--steps", "3", "--warmup", "1", "--curriculum-start", "3", "--copy-rows", "0.5", "--eval-count", "4"],
            *["--output", str(tmp_path / KV_ZOO_NAME)],
        ]
    )
    assert manifest["name"] == KV_ZOO_NAME and manifest["steps_done"] == 3
    assert manifest["sha256"]["model.safetensors"] == sha256_of(tmp_path / KV_ZOO_NAME / "model.safetensors")
    assert "exact_match_stepwise_block4" in manifest["eval"]
    pipe = load_llada_kv(folder=tmp_path / KV_ZOO_NAME)
    assert pipe.task == KeyValueTask(n_records=12, gen_length=4, n_keys=16, n_values=8)
    assert pipe.model.config.d_model == 16


def test_kv_filler_training_records_the_filler_variant_for_the_loader(tmp_path):
    task_flags = ["--n-records", "4", "--gen-length", "4", "--n-keys", "6", "--n-values", "5"]
    train_main(
        [
            *["--task", "kv", *task_flags, "--n-filler", "20", "--n-filler-symbols", "3"],
            *["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--ff", "32", "--batch-size", "4"],
            *["--steps", "2", "--warmup", "1", "--curriculum-start", "4", "--eval-count", "2"],
            *["--output", str(tmp_path / KV_ZOO_NAME)],
        ]
    )
    pipe = load_llada_kv(folder=tmp_path / KV_ZOO_NAME)
    assert pipe.task == KeyValueTask(n_records=4, gen_length=4, n_keys=6, n_values=5, n_filler=20, n_filler_symbols=3)
    assert pipe.task.prompt_length == 1 + 8 + 20 + 1 + 4


def test_multi_axis_run_stops_once_its_curriculum_is_done_and_warm_starts_another(tmp_path):
    from safetensors.torch import load_file

    flags = ["--task", "kv", "--n-records", "4", "--gen-length", "4", "--n-keys", "6", "--n-values", "5"]
    flags += ["--n-filler", "6", "--n-filler-symbols", "3", "--layout", "columns", "--eval-count", "2"]
    flags += ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--ff", "32", "--batch-size", "4"]
    first = train_main(
        [
            *flags,
            *["--curriculum-axes", "records:4:4", "keys:6:6", "filler:6:6", "--full-mask-rows", "0.5"],
            *["--curriculum-window", "3", "--stop-at-accuracy", "0.0", "--steps", "50", "--warmup", "1"],
            *["--output", str(tmp_path / "a")],
        ]
    )
    assert first["steps_done"] == 3  # every axis at its end from the start: the first full window ends the run
    saved = load_file(str(tmp_path / "a" / "checkpoint" / "state.safetensors"))
    train_main(
        [*flags, "--steps", "0", "--init-from", str(tmp_path / "a" / "checkpoint"), "--output", str(tmp_path / "b")]
    )
    weights = load_file(str(tmp_path / "b" / "model.safetensors"))  # a warm start with no step: the same weights
    assert weights.keys() == {k[len("model.") :] for k in saved if k.startswith("model.")}
    assert all(torch.equal(weights[k], saved[f"model.{k}"]) for k in weights)
    assert load_llada_kv(folder=tmp_path / "b").task.layout == "columns"
