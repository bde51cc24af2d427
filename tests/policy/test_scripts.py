"""Every `policies/` script runs on the zoo policy with tiny settings (executed as `__main__`, as
`python policies/<script>` would), and `diffaccel compare --model dp-reach` writes its records and resumes."""

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

import diffaccel
from diffaccel.zoo.weights_io import weights_dir

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "policies"

pytestmark = pytest.mark.skipif(
    not (weights_dir("dp-reach") / "model.safetensors").is_file(), reason="dp-reach zoo weights are not present"
)


def _run(script, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(SCRIPTS / script), *argv])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(SCRIPTS / script), run_name="__main__")
    return exit_info.value.code


def test_scripts_are_thin():
    assert sorted(p.name for p in SCRIPTS.glob("*.py")) == ["calibrate_bac.py", "evaluate.py", "run.py", "train.py"]
    assert all(len(p.read_text().splitlines()) < 12 for p in SCRIPTS.glob("*.py"))


def test_zoo_load_returns_the_policy():
    policy = diffaccel.zoo.load("dp-reach")
    out = policy.predict_action({"obs": torch.rand(2, 2, 6)}, num_inference_steps=2)
    assert out["action"].shape == (2, 8, 2) and out["action_pred"].shape == (2, 16, 2)
    assert diffaccel.zoo.entry("dp-reach").kind == "policy"


def test_calibrate_then_evaluate_with_the_schedule(tmp_path, monkeypatch, capsys):
    path = tmp_path / "bac.json"
    assert (
        _run(
            "calibrate_bac.py", ["--out", str(path), "--steps", "10", "--batch", "4", "--num-updates", "3"], monkeypatch
        )
        == 0
    )
    schedule = diffaccel.bac.BacSchedule.load(path)
    assert schedule.num_steps == 10 and len(schedule.updates) == 12  # 4 layers x (self-attn, cross-attn, FFN)
    capsys.readouterr()
    assert (
        _run(
            "evaluate.py",
            ["--strategy", "bac", "--schedule", str(path), "--steps", "10", "--episodes", "4"],
            monkeypatch,
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 4 and result["nfe"] == 10 * result["replans"]


def test_run_script_prints_actions_and_summary(monkeypatch, capsys):
    assert _run("run.py", ["--strategy", "taylorseer:interval=3", "--steps", "6", "--batch", "2"], monkeypatch) == 0
    text = capsys.readouterr().out
    assert "actions to execute" in text and "computed fraction" in text


def test_train_script_writes_weights_and_manifest(tmp_path, monkeypatch):
    assert (
        _run(
            "train.py",
            ["dp-reach", "--steps", "2", "--demos", "4", "--eval-episodes", "2", "--out", str(tmp_path)]
            + ["--n-layer", "2", "--demo-action-noise", "0.005", "--no-causal-attn"],
            monkeypatch,
        )
        == 0
    )
    manifest = json.loads((tmp_path / "dp-reach" / "manifest.json").read_text())
    assert manifest["steps"] == 2 and set(manifest["sha256"]) == {"config.json", "model.safetensors"}
    assert "success_rate" in manifest["metrics"]
    config = json.loads((tmp_path / "dp-reach" / "config.json").read_text())  # the options reach the recipe
    assert config["policy"]["n_layer"] == 2 and config["training_data"]["demo_action_noise"] == 0.005
    assert config["policy"]["causal_attn"] is False


def test_compare_policy_rows_and_resume(tmp_path):
    from diffaccel.cli import main

    argv = [
        "compare",
        "--model",
        "dp-reach",
        "--steps",
        "6",
        "--episodes",
        "4",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--strategies",
        "bac:num_updates=3 bac:mode=uniform,interval=3 ddim:steps=3",
    ]
    assert main(argv) == 0
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    by_tag = {r["tag"]: r for r in records}
    assert set(by_tag) == {"none", "bac:num_updates=3", "bac:interval=3,mode=uniform", "ddim:steps=3"}
    assert (
        by_tag["none"]["chunk_rmse"] == 0.0 and by_tag["ddim:steps=3"]["nfe"] == 3 * by_tag["ddim:steps=3"]["replans"]
    )
    assert by_tag["bac:interval=3,mode=uniform"]["unit_calls_computed"] == pytest.approx(2 / 6)
    assert (tmp_path / "report.md").is_file() and (tmp_path / "success_speed.png").is_file()
    assert main(argv + ["--resume"]) == 0  # nothing left to do: the records are kept as they are
    again = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert again == records
