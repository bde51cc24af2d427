"""`diffaccel compare` on a dLLM zoo model goes to `diffaccel.dllm.evaluate` and writes records the same way."""

from __future__ import annotations

import pytest
import torch

from diffaccel.compare import CompareSettings, run_compare
from diffaccel.compare.store import read_jsonl, record_key
from diffaccel.dllm.config import LLaDAConfig
from diffaccel.dllm.llada import LLaDAModelLM
from diffaccel.dllm.tasks.addition import BOS, EOS, MASK, AdditionTask
from diffaccel.dllm.zoo import AdditionPipeline
from diffaccel.zoo.registry import register_zoo_model, unregister_zoo_model

NAME = "test-dllm-addition"


def _tiny_addition_pipeline(device="cpu", dtype=torch.float32):
    torch.manual_seed(0)
    config = LLaDAConfig(
        d_model=32,
        n_heads=4,
        n_kv_heads=4,
        n_layers=2,
        mlp_hidden_size=64,
        vocab_size=16,
        embedding_size=16,
        rope_theta=10000.0,
        mask_token_id=MASK,
        eos_token_id=EOS,
        bos_token_id=BOS,
        eot_token_id=None,
        pad_token_id=EOS,
    )
    return AdditionPipeline(
        LLaDAModelLM(config).eval().to(device=device, dtype=dtype), AdditionTask(n_digits=2, gen_length=3)
    )


@pytest.fixture
def dllm_zoo_model():
    register_zoo_model(NAME, _tiny_addition_pipeline, "tiny random LLaDA on 2-digit addition (test)", kind="dllm")
    yield NAME
    unregister_zoo_model(NAME)


def test_dllm_models_are_routed_and_resumable(tmp_path, dllm_zoo_model):
    settings = dict(
        model=dllm_zoo_model,
        strategies=["dkv-cache", "ssd"],
        seeds=[0, 1],
        out=str(tmp_path),
        progress=False,
        print_table=False,
    )
    outcome = run_compare(CompareSettings(**settings))
    records = read_jsonl(tmp_path / "results.jsonl")
    assert sorted((r["tag"], r["seed"]) for r in records) == sorted(
        (tag, seed) for tag in ("none", "dkv-cache", "ssd") for seed in (0, 1)
    )
    for record in records:
        assert record["status"] == "ok" and record["family"] == "dllm"
        for name in ("accuracy", "token_agreement", "nfe", "tokens_per_s", "speedup", "wall_s"):
            assert record[name] is not None
        assert record["psnr"] is None and record["computed_fraction"] is None
    full = [r for r in records if r["tag"] == "none"]
    assert all(r["token_agreement"] == 1.0 and r["speedup"] == 1.0 for r in full)
    # SSD is lossless (token for token); the comparison must show it
    assert all(r["token_agreement"] == 1.0 for r in records if r["tag"] == "ssd")
    assert "| dkv-cache | 2 |" in (tmp_path / "report.md").read_text()
    assert outcome.records and outcome.paths["results"] == tmp_path / "results.jsonl"

    # resume: nothing finished is redone, nothing duplicated
    before = {record_key(r): r["finished_at"] if "finished_at" in r else r["wall_s"] for r in records}
    run_compare(CompareSettings(**settings, resume=True))
    again = read_jsonl(tmp_path / "results.jsonl")
    assert {record_key(r): r.get("finished_at", r["wall_s"]) for r in again} == before
