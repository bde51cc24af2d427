"""The `diffaccel` command line: argument parsing, errors, the compare subcommand, and the two-process split."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import pytest

from diffaccel.cli import _seeds, build_parser, main


def test_seed_ranges():
    assert _seeds("0,1,2") == [0, 1, 2]
    assert _seeds("0-3,10") == [0, 1, 2, 3, 10]
    assert _seeds("5 5 6") == [5, 6]


def test_strategies_are_repeatable_and_checked_before_anything_loads(capsys):
    args = build_parser().parse_args(
        ["compare", "--strategies", "taylorseer:interval=2,order=2", "--strategies", "diffusers:fbc"]
    )
    assert args.strategies == ["taylorseer:interval=2,order=2", "diffusers:fbc"]
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--model", "no-such-model-anywhere", "--strategies", "taylorseer:intervl=2"])
    assert exit_info.value.code == 2
    assert "Unknown option(s) ['intervl']" in capsys.readouterr().err


def test_resume_and_overwrite_exclude_each_other():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--resume", "--overwrite"])


def test_list_strategies(capsys):
    assert main(["compare", "--list-strategies"]) == 0
    text = capsys.readouterr().out
    for name in (
        "taylorseer",
        "diffusers:fbc",
        "diffusers:magcache",
        "diffusers:pab",
        "diffusers:fastercache",
        "diffusers:taylorseer",
        "cache-dit:dbcache",
        "cache-dit:taylorseer",
        "none",
    ):
        assert name in text


def test_compare_command_prints_the_table_and_stops_on_max_runs(tmp_path, capsys):
    argv = [
        "compare",
        "--model",
        "testing:tiny-flux",
        "--steps",
        "2",
        "--seeds",
        "0",
        "--out",
        str(tmp_path),
        "--strategies",
        "taylorseer:interval=2",
        "--no-progress",
    ]
    assert main(argv + ["--max-runs", "1"]) == 3  # stopped early: exit code 3
    assert "--resume" in capsys.readouterr().out
    assert main(argv) == 2  # results exist: refuse without --resume
    assert "--resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert "taylorseer" in out and "interval=2" in out and "LPIPS" in out
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(r["tag"] for r in records) == ["none", "taylorseer:interval=2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate launcher not on PATH")
def test_two_processes_split_the_seeds_and_merge_one_file(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 -m diffaccel compare --device cpu`: on a CPU machine
    accelerate starts two processes that join a gloo group (accelerate's `--cpu` alone starts one)."""
    out = tmp_path / "out"
    command = [
        "accelerate",
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "diffaccel",
        "compare",
        "--model",
        "testing:tiny-flux",
        "--steps",
        "2",
        "--seeds",
        "0-3",
        "--strategies",
        "taylorseer:interval=2",
        "--out",
        str(out),
        "--no-progress",
        "--device",
        "cpu",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    keys = [(r["tag"], r["seed"]) for r in records]
    assert sorted(keys) == sorted((tag, seed) for tag in ("none", "taylorseer:interval=2") for seed in range(4))
    # units are dealt out round-robin: seeds 0 and 2 to process 0, 1 and 3 to process 1
    assert {(r["seed"], r["process_index"]) for r in records} == {(0, 0), (1, 1), (2, 0), (3, 1)}
    assert not (out / "shards").exists(), "shards are merged into results.jsonl and removed"
    assert result.stdout.count("diffaccel compare: testing:tiny-flux") == 1, "only the main process prints the table"


def test_default_output_folders_never_collide_and_resume_finds_the_latest(tmp_path, monkeypatch):
    from diffaccel.compare.distributed import Processes
    from diffaccel.compare.run import CompareSettings, resolve_out

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no earlier comparison"):
        resolve_out(CompareSettings(model="flux-photos", resume=True), Processes())
    fresh = resolve_out(CompareSettings(model="flux-photos"), Processes())
    assert fresh.parent == tmp_path.joinpath("diffaccel-compare", "flux-photos").relative_to(tmp_path)
    for stamp in ("20260101-000000", "20260102-000000", "20260103-000000"):
        (fresh.parent / stamp).mkdir(parents=True)
    (fresh.parent / "20260102-000000" / "results.jsonl").write_text("")
    assert resolve_out(CompareSettings(model="flux-photos", resume=True), Processes()).name == "20260102-000000"
    assert resolve_out(CompareSettings(model="flux-photos", out="x"), Processes()) == type(fresh)("x")
    with pytest.raises(ValueError, match="pass --out"):
        resolve_out(CompareSettings(model="flux-photos"), Processes(index=0, count=2))


def test_scheduler_overrides_reach_the_pipeline_and_every_record(tmp_path, capsys):
    from diffaccel.compare.models import load_model

    model = load_model("flux-photos", scheduler_overrides={"shift": 0.3})
    model.pipe.scheduler.set_timesteps(sigmas=[1.0, 0.5, 0.25])
    by_hand = [0.3 * s / (1 + (0.3 - 1) * s) for s in (1.0, 0.5, 0.25)]
    assert model.pipe.scheduler.sigmas[:3].tolist() == pytest.approx(by_hand)
    assert model.scheduler_tag == "shift=0.3"

    argv = [
        "compare",
        "--model",
        "testing:tiny-flux",
        "--steps",
        "2",
        "--seeds",
        "0",
        "--out",
        str(tmp_path),
        "--strategies",
        "taylorseer:interval=2",
        "--no-progress",
        "--scheduler",
        "shift=2.0",
    ]
    assert main(argv) == 0
    assert "shift=2.0" in capsys.readouterr().out
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {r["scheduler"] for r in records} == {"shift=2.0"} and len(records) == 2
    argv[argv.index("--out") + 1] = str(tmp_path / "typo")
    assert main(argv[:-1] + ["shfit=2.0"]) == 2
    assert "has no config key(s) ['shfit']" in capsys.readouterr().err
