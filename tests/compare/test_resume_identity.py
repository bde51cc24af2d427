"""`--resume` identifies a finished run by what actually ran: a spec whose meaning lives in code (a tuned
preset) is re-run when that code now resolves it differently, and reused when it does not."""

from __future__ import annotations

import logging

import pytest
import torch

from diffaccel.compare import CompareSettings, run_compare
from diffaccel.compare.harness import Harness
from diffaccel.compare.store import encode_record, read_jsonl, record_key
from diffaccel.core.atomic import atomic_write_text
from diffaccel.schedules import presets

SPEC = "taylorseer:preset=psnr35"
#: an "older" psnr35 for every family: two of the 50 steps computed (the real table computes all 4 of 4)
OLD_ENTRY = presets._at("0|25")


def _settings(out, **overrides):
    values = dict(
        model="testing:tiny-flux",
        steps=4,
        seeds=[0],
        out=str(out),
        progress=False,
        print_table=False,
        lpips=False,
        strategies=[SPEC],
    )
    values.update(overrides)
    return CompareSettings(**values)


def _by_tag(records):
    return {r["tag"]: r for r in records}


def _count_puts(monkeypatch):
    real_put, puts = Harness._put, []

    def counting_put(self, record, count=True):
        puts.append(record["tag"])
        real_put(self, record, count)

    monkeypatch.setattr(Harness, "_put", counting_put)
    return puts


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """The reference: the spec run once in a fresh folder under the real preset table."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("fresh")
    run_compare(_settings(out))
    return _by_tag(read_jsonl(out / "results.jsonl"))


@pytest.fixture
def old_folder(tmp_path, monkeypatch):
    """A folder whose preset row was measured under another preset table."""
    table = {"flux": OLD_ENTRY, "*": OLD_ENTRY}
    with monkeypatch.context() as patch:
        patch.setitem(presets.TUNED_PRESETS["taylorseer"], "psnr35", table)
        run_compare(_settings(tmp_path))
    return tmp_path


def test_a_preset_measured_with_another_table_is_run_again(old_folder, fresh, monkeypatch, caplog):
    old = _by_tag(read_jsonl(old_folder / "results.jsonl"))
    assert old[SPEC]["full_steps"] == 2 != fresh[SPEC]["full_steps"]  # the tables really differ here

    puts = _count_puts(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="diffaccel.compare.harness"):
        outcome = run_compare(_settings(old_folder, resume=True))
    assert puts == [SPEC]
    assert old[SPEC]["config_digest"] != fresh[SPEC]["config_digest"]
    assert any(
        f"1 finished run of '{SPEC}' was measured with another resolved configuration" in m for m in caplog.messages
    )
    now = _by_tag(read_jsonl(old_folder / "results.jsonl"))
    assert len(read_jsonl(old_folder / "results.jsonl")) == 2
    for name in ("config_digest", "config", "full_steps", "steps", "computed_fraction", "psnr", "ssim"):
        assert now[SPEC][name] == fresh[SPEC][name], name
    # the baseline is the same run as before: same identity, not measured again
    assert record_key(now["none"]) == record_key(old["none"]) == record_key(fresh["none"])
    assert now["none"] == old["none"] and "config_digest" not in now["none"]
    assert [r.full_steps.mean for r in outcome.rows if r.tag == SPEC] == [fresh[SPEC]["full_steps"]]


def test_an_unchanged_configuration_is_not_run_again(tmp_path, monkeypatch, caplog):
    run_compare(_settings(tmp_path))
    before = read_jsonl(tmp_path / "results.jsonl")
    puts = _count_puts(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="diffaccel.compare.harness"):
        run_compare(_settings(tmp_path, resume=True))
    assert puts == [] and not [m for m in caplog.messages if "resolved configuration" in m]
    assert read_jsonl(tmp_path / "results.jsonl") == before


def _rewrite(folder, change):
    records = [change(dict(r)) for r in read_jsonl(folder / "results.jsonl")]
    atomic_write_text(folder / "results.jsonl", "".join(encode_record(r) + "\n" for r in records))


def _without_digest(config=None):
    def change(record):
        record.pop("config_digest", None)
        if config is not None and record["tag"] == SPEC:
            record["config"] = config
        return record

    return change


def test_records_from_before_the_digest_are_matched_by_their_config_text(tmp_path, monkeypatch):
    run_compare(_settings(tmp_path))
    _rewrite(tmp_path, _without_digest())
    puts = _count_puts(monkeypatch)
    run_compare(_settings(tmp_path, resume=True))
    assert puts == []  # same non-default options as this code resolves: the same run

    _rewrite(tmp_path, _without_digest(config="taylorseer:preset=psnr35:schedule=0|1"))
    run_compare(_settings(tmp_path, resume=True))
    assert puts == [SPEC]
    assert "config_digest" in _by_tag(read_jsonl(tmp_path / "results.jsonl"))[SPEC]
