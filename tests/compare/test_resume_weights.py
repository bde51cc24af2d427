"""`--resume` of the dLLM and policy comparisons re-measures a finished row when what it measured changed: other
weights under the same zoo name (a retrained model), or records from before run digests existed. Rows that
measured the same thing are kept as they are."""

from __future__ import annotations

import json

import pytest
import torch

from diffaccel.compare import CompareSettings, run_compare
from diffaccel.compare.store import read_jsonl
from diffaccel.zoo.registry import register_zoo_model, unregister_zoo_model
from diffaccel.zoo.weights_io import weights_dir

from .test_dllm_dispatch import _tiny_addition_pipeline

DLLM = "test-resume-dllm"
POLICY = "test-resume-policy"
WEIGHTS = {"perturb": 0.0}  # what the registered loaders build: the same model, or one with changed weights


def _perturbed(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(WEIGHTS["perturb"])


def _dllm_pipeline(device="cpu", dtype=torch.float32):
    pipe = _tiny_addition_pipeline(device, dtype)
    _perturbed(pipe.model)
    return pipe


def _policy(device="cpu", dtype=torch.float32):
    from diffaccel.policy.zoo import load

    policy = load(weights_dir("dp-reach"), device, dtype)
    _perturbed(policy.model)
    return policy


@pytest.fixture
def registered():
    WEIGHTS["perturb"] = 0.0
    register_zoo_model(DLLM, _dllm_pipeline, "tiny LLaDA whose weights a test changes", kind="dllm")
    register_zoo_model(POLICY, _policy, "dp-reach whose weights a test changes", kind="policy")
    yield
    unregister_zoo_model(DLLM)
    unregister_zoo_model(POLICY)


def _by_tag(path):
    return {r["tag"]: r for r in read_jsonl(path / "results.jsonl")}


def test_dllm_resume_remeasures_rows_of_other_weights_and_old_records(tmp_path, registered):
    settings = dict(model=DLLM, strategies=["dkv-cache"], seeds=[0], out=str(tmp_path), progress=False)
    settings["print_table"] = False
    run_compare(CompareSettings(**settings))
    first = _by_tag(tmp_path)
    assert set(first) == {"none", "dkv-cache"} and all(r["config_digest"] for r in first.values())
    assert first["none"]["config_digest"] != first["dkv-cache"]["config_digest"]

    run_compare(CompareSettings(**settings, resume=True))
    assert _by_tag(tmp_path) == first  # same weights, same settings: nothing re-measured

    # the zoo name now loads other weights: every row and the cached full run are measured again
    WEIGHTS["perturb"] = 0.05
    run_compare(CompareSettings(**settings, resume=True))
    resumed = _by_tag(tmp_path)
    fresh_dir = tmp_path / "fresh"
    run_compare(CompareSettings(**{**settings, "out": str(fresh_dir)}))
    fresh = _by_tag(fresh_dir)
    for tag in ("none", "dkv-cache"):
        assert resumed[tag]["config_digest"] == fresh[tag]["config_digest"] != first[tag]["config_digest"]
        for field in ("accuracy", "token_agreement", "sequence_agreement", "nfe", "forward_rows"):
            assert resumed[tag][field] == fresh[tag][field], (tag, field)
    meta = next((tmp_path / "baseline").rglob("seed0.json"))
    assert json.loads(meta.read_text())["config_digest"] == fresh["none"]["config_digest"]

    # a record written before digests existed cannot be trusted: it is measured again
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    for record in lines:
        if record["tag"] == "dkv-cache":
            record.pop("config_digest")
            record["accuracy"] = -1.0
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    run_compare(CompareSettings(**settings, resume=True))
    again = _by_tag(tmp_path)
    assert again["dkv-cache"]["accuracy"] == fresh["dkv-cache"]["accuracy"]
    assert again["dkv-cache"]["config_digest"] == fresh["dkv-cache"]["config_digest"]


@pytest.mark.skipif(not (weights_dir("dp-reach") / "model.safetensors").is_file(), reason="no dp-reach weights")
def test_policy_resume_remeasures_rows_of_other_weights(tmp_path, registered):
    from diffaccel.cli import main

    def arguments(out):
        return ["compare", "--model", POLICY, "--steps", "4", "--episodes", "2", "--out", str(out), "--no-progress"] + [
            "--strategies",
            "bac:num_updates=2 ddim:steps=2",
        ]

    argv = arguments(tmp_path)
    assert main(argv) == 0
    first = _by_tag(tmp_path)
    assert set(first) == {"none", "bac:num_updates=2", "ddim:steps=2"}
    assert main(argv + ["--resume"]) == 0
    assert _by_tag(tmp_path) == first

    WEIGHTS["perturb"] = 0.01
    assert main(argv + ["--resume"]) == 0
    resumed = _by_tag(tmp_path)
    assert all(resumed[tag]["config_digest"] != first[tag]["config_digest"] for tag in first)
    # BAC was calibrated again on the new weights, beside (not over) the old weights' schedule
    assert len(list((tmp_path / "calibration").glob("bac_num_updates_2-steps4-*.json"))) == 2
    fresh_dir = tmp_path / "fresh"
    assert main(arguments(fresh_dir)) == 0
    fresh = _by_tag(fresh_dir)
    for tag in first:
        assert resumed[tag]["config_digest"] == fresh[tag]["config_digest"]
        for field in ("success_rate", "chunk_rmse", "nfe", "unit_calls_computed"):
            assert resumed[tag][field] == fresh[tag][field], (tag, field)
