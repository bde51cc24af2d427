"""The trainer's kv option writes a zoo folder that the llada-kv loader reads."""

from __future__ import annotations

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
