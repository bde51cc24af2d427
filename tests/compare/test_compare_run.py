"""`run_compare` end to end on a tiny FLUX pipeline: records, numbers against independent references,
grid and plot, the resume path, and peers that cannot run on a model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import diffaccel
from diffaccel import metrics
from diffaccel.compare import CompareSettings, OutputExistsError, run_compare
from diffaccel.compare.harness import Harness
from diffaccel.compare.store import RECORD_FIELDS, read_jsonl, record_key
from diffaccel.testing.tiny_pipelines import tiny_flux_pipeline

STEPS = 4
FLUX_KWARGS = dict(
    prompt="a photo of a red fox sitting in fresh snow",
    height=16,
    width=16,
    max_sequence_length=16,
    num_inference_steps=STEPS,
    output_type="np",
)


def _settings(out, **overrides):
    values = dict(
        model="testing:tiny-flux",
        steps=STEPS,
        seeds=[0, 1],
        out=str(out),
        progress=False,
        print_table=False,
        strategies=["taylorseer:interval=2"],
    )
    values.update(overrides)
    return CompareSettings(**values)


def _by_tag(records):
    grouped = {}
    for record in records:
        grouped.setdefault(record["tag"], []).append(record)
    return grouped


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("e2e")
    outcome = run_compare(
        _settings(
            out, strategies=["taylorseer:interval=2", "diffusers:fbc:threshold=-1", "diffusers:fbc:threshold=1000000"]
        )
    )
    return out, outcome


def test_records_carry_every_field_once_per_run(e2e):
    out, outcome = e2e
    records = read_jsonl(out / "results.jsonl")
    grouped = _by_tag(records)
    assert sorted(grouped) == [
        "diffusers:fbc:threshold=-1",
        "diffusers:fbc:threshold=1000000",
        "none",
        "taylorseer:interval=2",
    ]
    assert all(sorted(r["seed"] for r in group) == [0, 1] for group in grouped.values())
    assert len({record_key(r) for r in records}) == len(records) == 8
    for record in records:
        assert set(RECORD_FIELDS) <= set(record)
        assert record["model"] == "testing:tiny-flux" and record["status"] == "ok"
        assert record["prompt"] == FLUX_KWARGS["prompt"] and record["wall_s"] > 0
        assert record["lpips"] is None or 0 <= record["lpips"]
    for base in grouped["none"]:
        assert (base["steps"], base["full_steps"], base["computed_fraction"]) == (STEPS, STEPS, 1.0)
        assert base["psnr"] is None and base["speedup"] == 1.0


def test_diffaccel_row_matches_an_independent_wrapped_run(e2e):
    out, _ = e2e
    records = _by_tag(read_jsonl(out / "results.jsonl"))["taylorseer:interval=2"]
    pipe = tiny_flux_pipeline()
    for record in records:
        reference = pipe(**FLUX_KWARGS, generator=torch.Generator().manual_seed(record["seed"])).images
        diffaccel.wrap(pipe, "taylorseer", interval=2)
        try:
            test = pipe(**FLUX_KWARGS, generator=torch.Generator().manual_seed(record["seed"])).images
            summary = diffaccel.summary(pipe)
        finally:
            diffaccel.unwrap(pipe)
        assert record["psnr"] == pytest.approx(metrics.psnr(reference[0], test[0]), rel=1e-9)
        assert record["ssim"] == pytest.approx(metrics.ssim(reference[0], test[0]), rel=1e-9)
        assert record["computed_fraction"] == pytest.approx(summary.computed_fraction)
        assert record["full_steps"] == summary.full_steps < STEPS
        baseline = next(r for r in _by_tag(read_jsonl(out / "results.jsonl"))["none"] if r["seed"] == record["seed"])
        assert record["speedup"] == pytest.approx(baseline["wall_s"] / record["wall_s"])
        assert record["cpu_s"] > 0 and record["cpu_speedup"] == pytest.approx(baseline["cpu_s"] / record["cpu_s"])


def _head_block_share() -> float:
    """Linear MACs of FLUX's first block over all blocks, counted with hooks written here."""
    pipe = tiny_flux_pipeline()
    transformer = pipe.transformer
    totals = {"head": 0, "all": 0}
    handles = []
    blocks = list(transformer.transformer_blocks) + list(transformer.single_transformer_blocks)
    for index, block in enumerate(blocks):
        for module in block.modules():
            if isinstance(module, torch.nn.Linear):

                def hook(m, args, output, head=index == 0):
                    macs = output.numel() * m.in_features
                    totals["all"] += macs
                    totals["head"] += macs if head else 0

                handles.append(module.register_forward_hook(hook))
    pipe(**{**FLUX_KWARGS, "num_inference_steps": 1}, generator=torch.Generator().manual_seed(0))
    for handle in handles:
        handle.remove()
    return totals["head"] / totals["all"]


def test_peer_work_is_counted_against_closed_forms(e2e):
    out, _ = e2e
    grouped = _by_tag(read_jsonl(out / "results.jsonl"))
    for record in grouped["diffusers:fbc:threshold=-1"]:  # never skips: bit-identical, all work done
        assert record["psnr"] == math.inf and record["ssim"] == 1.0
        assert (record["computed_fraction"], record["full_steps"]) == (1.0, STEPS)
        assert record["computed_fraction_source"].startswith("Linear/Conv MACs")
    share = _head_block_share()
    for record in grouped["diffusers:fbc:threshold=1000000"]:
        # step 0 computes everything; every later step runs only the head block
        assert record["full_steps"] == 1
        assert record["computed_fraction"] == pytest.approx((1 + (STEPS - 1) * share) / STEPS, rel=1e-12)
        assert math.isfinite(record["psnr"])


def test_table_grid_and_plot(e2e):
    out, outcome = e2e
    assert [row.tag for row in outcome.rows] == [
        "none",
        "taylorseer:interval=2",
        "diffusers:fbc:threshold=-1",
        "diffusers:fbc:threshold=1000000",
    ]
    row = outcome.rows[1]
    records = _by_tag(outcome.records)["taylorseer:interval=2"]
    assert row.runs == 2 and row.psnr.mean == pytest.approx(np.mean([r["psnr"] for r in records]))
    assert row.speedup.std == pytest.approx(np.std([r["speedup"] for r in records]))
    report = (out / "report.md").read_text()
    assert "| taylorseer | interval=2 |" in report and "| diffusers:fbc | threshold=-1 |" in report
    assert "temporal err" not in report  # a column for videos only
    grid = Image.open(out / "grid.png")
    # 4 rows (baseline + 3) of 96-pixel cells, 2 columns (2 seeds x 1 image), 22-pixel header
    assert grid.size == (260 + 2 * 100 + 4 + 12, 22 + 4 * 100 + 4)  # one 12-pixel gap between the seeds
    assert Image.open(out / "speed_quality.png").format == "PNG"
    assert outcome.paths["plot"] == out / "speed_quality.png"


def test_existing_results_need_resume_or_overwrite(e2e):
    out, _ = e2e
    with pytest.raises(OutputExistsError, match="--resume"):
        run_compare(_settings(out))


def test_resume_after_a_kill_loses_nothing_and_duplicates_nothing(tmp_path, monkeypatch):
    strategies = ["taylorseer:interval=2", "diffusers:fbc:threshold=1000000"]
    fresh = run_compare(_settings(tmp_path / "fresh", strategies=strategies))
    out = tmp_path / "killed"

    # a kill right after the 3rd record is on disk (baseline seeds 0 and 1, then taylorseer seed 0)
    real_put, puts = Harness._put, []

    def killing_put(self, record, count=True):
        real_put(self, record, count)
        puts.append(record["tag"])
        if len(puts) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(Harness, "_put", killing_put)
    with pytest.raises(KeyboardInterrupt):
        run_compare(_settings(out, strategies=strategies))
    monkeypatch.undo()
    assert len(read_jsonl(out / "results.jsonl")) == 3
    baseline_files = sorted((out / "baseline").rglob("*.npy"))
    stamps = {p: p.stat().st_mtime_ns for p in baseline_files}
    assert len(baseline_files) == 2

    # a second interruption through --max-runs, then the rest
    partial = run_compare(_settings(out, strategies=strategies, resume=True, max_runs=1))
    assert partial.interrupted and len(read_jsonl(out / "results.jsonl")) == 4
    resumed = run_compare(_settings(out, strategies=strategies, resume=True))
    assert not resumed.interrupted

    records = read_jsonl(out / "results.jsonl")
    assert len(records) == len({record_key(r) for r in records}) == 6
    assert {record_key(r) for r in records} == {record_key(r) for r in fresh.records}
    assert {p: p.stat().st_mtime_ns for p in baseline_files} == stamps, "cached baseline outputs were recomputed"
    expected = {record_key(r): r for r in fresh.records}
    for record in records:
        twin = expected[record_key(record)]
        for name in ("psnr", "ssim", "computed_fraction", "full_steps", "steps"):
            assert record[name] == twin[name], (record["tag"], name)


def test_peers_that_cannot_run_get_a_reasoned_row(tmp_path, monkeypatch):
    from diffaccel.compare.peers import cache_dit

    monkeypatch.setattr(cache_dit, "available", lambda: False)
    outcome = run_compare(
        _settings(
            tmp_path,
            model="testing:tiny-sd",
            seeds=[0],
            steps=3,
            strategies=["diffusers:fbc", "diffusers:pab", "cache-dit:dbcache", "taylorseer:interval=2"],
        )
    )
    rows = {row.tag: row for row in outcome.rows}
    assert rows["diffusers:fbc"].status == "unsupported"
    assert "apply_first_block_cache" in rows["diffusers:fbc"].notes[0]
    assert rows["cache-dit:dbcache"].status == "unsupported"
    assert "pip install 'diffaccel[cache-dit]'" in rows["cache-dit:dbcache"].notes[0]
    # the rows that can run still ran and were scored
    assert rows["taylorseer:interval=2"].status == "ok" and rows["taylorseer:interval=2"].runs == 1
    assert rows["diffusers:pab"].status == "ok"
    records = read_jsonl(tmp_path / "results.jsonl")
    unsupported = [r for r in records if r["status"] == "unsupported"]
    assert sorted(r["tag"] for r in unsupported) == ["cache-dit:dbcache", "diffusers:fbc"]
    assert all(r["seed"] is None and r["reason"] for r in unsupported)
    assert "unsupported [1]" in (tmp_path / "report.md").read_text()


def test_state_per_module_peers_refuse_two_call_guidance(tmp_path):
    outcome = run_compare(
        _settings(
            tmp_path,
            model="testing:tiny-wan",
            seeds=[0],
            steps=2,
            strategies=["diffusers:pab", "diffusers:fastercache", "diffusers:taylorseer", "diffusers:fbc:threshold=-1"],
        )
    )
    rows = {row.tag: row for row in outcome.rows}
    for tag in ("diffusers:pab", "diffusers:fastercache"):
        assert rows[tag].status == "unsupported"
        assert "2x per step" in rows[tag].notes[0] and "cache_context" in rows[tag].notes[0]
    # diffusers' TaylorSeer default patterns are re.fullmatch("^blocks.*attn", name): Wan's attention modules are
    # "blocks.<i>.attn1"/"attn2", so nothing is hooked, and the row says so instead of reporting a no-op as a speedup
    assert rows["diffusers:taylorseer"].status == "unsupported"
    assert "attached to no module" in rows["diffusers:taylorseer"].notes[0]
    # FBC keeps state per cache_context and runs; video outputs are scored per frame
    assert rows["diffusers:fbc:threshold=-1"].status == "ok"
    record = next(r for r in outcome.records if r["tag"] == "diffusers:fbc:threshold=-1")
    assert record["psnr"] == math.inf and record["temporal_error"] == 0.0
    assert record["calls_per_step"] == 2 and record["computed_fraction"] == 1.0
    report = (tmp_path / "report.md").read_text()
    assert "| temporal err |" in report and rows["diffusers:fbc:threshold=-1"].temporal_error.mean == 0.0
    # the frame strip: baseline + FBC rows, each with every frame of the first clip and its difference map
    strip = Image.open(tmp_path / "frames.png")
    clip_frames = np.load(next((tmp_path / "baseline").rglob("*.npy"))).shape[1]
    assert outcome.paths["frames"] == tmp_path / "frames.png"
    assert strip.size == (260 + 2 * clip_frames * (64 + 4) + 4 + 12, 22 + 2 * (64 + 4) + 4)
    diff_tile = np.asarray(strip)[22 + 4 + 64 + 4 + 10, 260 + 4 + clip_frames * 68 + 12 + 10]
    # FBC at threshold -1 computes every step: black up to the uint8 rounding of stored outputs (x5)
    assert max(diff_tile.tolist()) <= 3


def test_a_strategy_failing_midway_keeps_its_finished_runs_and_resumes(tmp_path, monkeypatch):
    from diffaccel.compare.runners import DiffaccelRunner

    real_after_call, calls = DiffaccelRunner.after_call, []

    def failing_after_call(self):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated strategy bug")
        return real_after_call(self)

    monkeypatch.setattr(DiffaccelRunner, "after_call", failing_after_call)
    outcome = run_compare(_settings(tmp_path))  # does not raise
    row = next(r for r in outcome.rows if r.tag == "taylorseer:interval=2")
    assert row.status == "ok" and row.runs == 1
    assert any("failed after 1 run(s): RuntimeError: simulated strategy bug" in n for n in row.notes)
    monkeypatch.undo()
    resumed = run_compare(_settings(tmp_path, resume=True))
    row = next(r for r in resumed.rows if r.tag == "taylorseer:interval=2")
    assert row.runs == 2 and not row.notes
    records = read_jsonl(tmp_path / "results.jsonl")
    assert sorted((r["tag"], r["seed"], r["status"]) for r in records) == [
        ("none", 0, "ok"),
        ("none", 1, "ok"),
        ("taylorseer:interval=2", 0, "ok"),
        ("taylorseer:interval=2", 1, "ok"),
    ]


def test_repeats_time_every_run_several_times(tmp_path, monkeypatch):
    calls = []
    real_call = Harness._call
    monkeypatch.setattr(
        Harness, "_call", lambda self, seed, condition: calls.append(seed) or real_call(self, seed, condition)
    )
    outcome = run_compare(_settings(tmp_path, seeds=[0], steps=2, repeats=2))
    # per row: one warm-up on the held-out seed, then two timed calls on seed 0
    assert calls == [10_000, 0, 0, 10_000, 0, 0]
    assert all(r["timing_repeats"] == 2 for r in outcome.records)


def test_cache_dit_rows_run_after_every_other_row(tmp_path, monkeypatch):
    """cache-dit leaves its patch functors on the transformer; rows after it would see a patched model."""
    order = []
    real_run_strategy = Harness.run_strategy
    monkeypatch.setattr(
        Harness,
        "run_strategy",
        lambda self, spec, units: order.append(spec.tag) or real_run_strategy(self, spec, units),
    )
    monkeypatch.setattr(Harness, "run_unit", lambda *a, **k: None)  # only the order matters here
    outcome = run_compare(
        _settings(
            tmp_path, seeds=[0], steps=2, strategies=["cache-dit:dbcache", "diffusers:fbc", "taylorseer:interval=2"]
        )
    )
    assert order == ["taylorseer:interval=2", "diffusers:fbc", "cache-dit:dbcache"]
    assert [row.tag for row in outcome.rows][:1] == ["none"]  # the table keeps the user's order for the rest
