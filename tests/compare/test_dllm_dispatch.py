"""`diffaccel compare` on a dLLM zoo model goes to `diffaccel.dllm.evaluate` and writes records the same way."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from diffaccel.compare import CompareSettings, run_compare
from diffaccel.compare.store import read_jsonl, record_key
from diffaccel.dllm.config import LLaDAConfig
from diffaccel.dllm.llada import LLaDAModelLM
from diffaccel.dllm.tasks.addition import BOS, EOS, MASK, VOCAB_SIZE, AdditionTask
from diffaccel.dllm.training import tiny_dream
from diffaccel.dllm.zoo import AdditionPipeline, DreamAdditionPipeline
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


def _independent_counts(pipe, spec, input_ids, batch_size):
    """Tokens, model calls, sequences and (sequence, position) pairs through the model, counted by a hook on the bare model itself
    (not the sampler's record), decoding batch by batch with `diffaccel.wrap` (None: unwrapped)."""
    import diffaccel

    calls, embedded = [], []
    handle = pipe.model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    # the token embedding sees exactly the positions computed (a cache's subset forward embeds only those)
    embed = pipe.model.model.transformer.wte.register_forward_pre_hook(lambda m, args: embedded.append(args[0].numel()))
    if spec is not None:
        diffaccel.wrap(pipe, spec)
    try:
        generated = []
        for start in range(0, input_ids.shape[0], batch_size):
            generator = torch.Generator().manual_seed(start)  # evaluate_dllm: generator_seed + start, seed 0
            generated.append(pipe(input_ids=input_ids[start : start + batch_size], generator=generator).generated)
    finally:
        handle.remove()
        embed.remove()
        if spec is not None:
            diffaccel.unwrap(pipe)
    return torch.cat(generated), len(calls), sum(calls), sum(embedded)


def test_dllm_rows_and_compositions_against_an_independent_count(tmp_path, dllm_zoo_model):
    """Every column of a dLLM row, for single strategies and compositions, at a batch size that splits the
    problems unevenly, equals a count made here without the comparison code; a resume re-runs nothing."""
    from diffaccel import zoo

    rows = {
        "dkv-cache:refresh_interval=2": ["dkv-cache:refresh_interval=2"],
        "sparsed:block_size=2,compile=false,skip=0.34+dkv-cache:refresh_interval=2": [
            "sparsed:block_size=2,compile=False,skip=0.34",
            "dkv-cache:refresh_interval=2",
        ],
        "fast-dllm:cache=dual,threshold=None": ["fast-dllm:threshold=None,cache=dual"],
        "ssd:draft_length=2+fast-dllm:cache=dual,threshold=None": [
            "ssd:draft_length=2",
            "fast-dllm:threshold=None,cache=dual",
        ],
    }
    settings = dict(
        model=dllm_zoo_model,
        strategies=[
            "dkv-cache:refresh_interval=2",
            "sparsed:block_size=2,compile=False,skip=0.34+dkv-cache:refresh_interval=2",
            "fast-dllm:threshold=None,cache=dual",
            "ssd:draft_length=2+fast-dllm:threshold=None,cache=dual",
        ],
        seeds=[0],
        problems=5,
        batch_size=2,
        out=str(tmp_path),
        progress=False,
        print_table=False,
    )
    run_compare(CompareSettings(**settings))
    records = {r["tag"]: r for r in read_jsonl(tmp_path / "results.jsonl")}
    assert set(records) == {"none", *rows}
    pipe = zoo.load(dllm_zoo_model)
    input_ids, answers = pipe.task.held_out(5, seed=0)
    full, full_calls, full_rows, _ = _independent_counts(pipe, None, input_ids, 2)
    assert full_calls == 3 * 3  # three calls of the pipeline (2 + 2 + 1 prompts), one forward per step (3 steps)
    assert (records["none"]["nfe"], records["none"]["forward_rows"]) == (full_calls, full_rows)
    for tag, spec in [("none", None), *rows.items()]:
        record = records[tag]
        generated, calls, sequences, tokens = _independent_counts(pipe, spec, input_ids, 2)
        assert record["status"] == "ok" and record["condition"] == "held-out-5-batch2"
        assert record["prompts"] == 5 and record["gen_length"] == 3
        assert record["accuracy"] == float((generated == answers).all(1).float().mean())
        assert record["token_agreement"] == float((generated == full).float().mean())
        assert record["sequence_agreement"] == float((generated == full).all(1).float().mean())
        assert (record["nfe"], record["forward_rows"], record["query_tokens"]) == (calls, sequences, tokens)
        assert record["nfe_ratio"] == calls / full_calls
        assert record["tokens_per_s"] == pytest.approx(15 / record["wall_s"])
        assert record["cpu_speedup"] == pytest.approx(records["none"]["cpu_s"] / record["cpu_s"])
        assert record["speedup"] == pytest.approx(records["none"]["wall_s"] / record["wall_s"])
    # SSD with the cache is lossless relative to stepwise decoding with that cache, and needs fewer forwards
    ssd, cached = (
        records["ssd:draft_length=2+fast-dllm:cache=dual,threshold=None"],
        records["fast-dllm:cache=dual,threshold=None"],
    )
    assert ssd["sequence_agreement"] == cached["sequence_agreement"] and ssd["nfe"] < cached["nfe"]
    assert "| ssd:draft_length=2+fast-dllm:cache=dual,threshold=None | 1 |" in (tmp_path / "report.md").read_text()

    before = {record_key(r): r["wall_s"] for r in read_jsonl(tmp_path / "results.jsonl")}
    run_compare(CompareSettings(**settings, resume=True))
    assert {record_key(r): r["wall_s"] for r in read_jsonl(tmp_path / "results.jsonl")} == before


def _tiny_dream_addition_pipeline(device="cpu", dtype=torch.float32):
    torch.manual_seed(0)
    size = SimpleNamespace(d_model=32, n_heads=4, n_kv_heads=2, n_layers=1, ff=64)  # the trainer's builder
    model = tiny_dream(size, VOCAB_SIZE, MASK, EOS, BOS)
    return DreamAdditionPipeline(model.eval().to(device=device, dtype=dtype), AdditionTask(n_digits=2, gen_length=3))


def test_strategies_refused_for_the_model_family_are_unsupported_rows(tmp_path):
    name = "test-dream-addition"
    register_zoo_model(name, _tiny_dream_addition_pipeline, "tiny random Dream on 2-digit addition (test)", kind="dllm")
    try:
        settings = dict(model=name, strategies=["dkv-cache:variant=greedy", "ssd"], seeds=[0], out=str(tmp_path))
        run_compare(CompareSettings(**settings, progress=False, print_table=False))
    finally:
        unregister_zoo_model(name)
    records = {r["tag"]: r for r in read_jsonl(tmp_path / "results.jsonl")}
    greedy = records["dkv-cache:variant=greedy"]
    assert greedy["status"] == "unsupported" and "LLaDA-style models only" in greedy["reason"]
    assert records["ssd"]["status"] == "ok" and records["ssd"]["token_agreement"] == 1.0
    assert "unsupported: dkv-cache variant='greedy'" in (tmp_path / "report.md").read_text()
