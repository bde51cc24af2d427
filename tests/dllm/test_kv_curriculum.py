"""The kv curriculum over several axes (records, key symbols, fillers) and the fully masked training rows."""

from __future__ import annotations

import random

import pytest
import torch

from diffaccel.dllm.curriculum import Axis, AxisCurriculum
from diffaccel.dllm.tasks.kv import KeyValueTask
from diffaccel.dllm.train_recall import batch_sizes
from diffaccel.dllm.training import sft_loss

FULL = KeyValueTask(n_records=32, gen_length=32, n_keys=48, n_values=64, n_filler=414, n_filler_symbols=32)


def _lookup_rows(task: KeyValueTask, prompts: torch.Tensor, answers: torch.Tensor, records: int, keys: int) -> None:
    """Every row: ``records`` distinct keys from the first ``keys`` symbols, each followed by its value, and the
    answer equal to a lookup of the queried keys computed here by hand."""
    for row in range(prompts.shape[0]):
        body = prompts[row, 1 : -task.gen_length - 1].tolist()
        at = [i for i, t in enumerate(body) if t < task.n_keys]
        assert len(at) == records and len({body[i] for i in at}) == records
        assert all(body[i] < keys and task.n_keys <= body[i + 1] < task.first_filler for i in at)
        lookup = {body[i]: body[i + 1] for i in at}
        queries = prompts[row, -task.gen_length :].tolist()
        assert answers[row].tolist() == [lookup[q] for q in queries]


def test_batches_have_the_stated_records_key_symbols_and_fillers():
    prompts, answers = FULL.batch(24, torch.Generator().manual_seed(0), records=4, keys=16, fillers=10)
    assert prompts.shape == (24, 1 + 8 + 10 + 1 + 32) and answers.shape == (24, 32)
    _lookup_rows(FULL, prompts, answers, records=4, keys=16)
    fillers = (prompts >= FULL.first_filler) & (prompts < FULL.n_content)
    assert (fillers.sum(dim=1) == 10).all()
    prompts, answers = FULL.batch(8, torch.Generator().manual_seed(1), records=32, keys=48, fillers=0)
    _lookup_rows(FULL, prompts, answers, records=32, keys=48)
    assert all(len(set(row)) == 32 for row in prompts[:, -32:].tolist())  # 32 records, all queried once


def test_batch_axes_are_checked():
    generator = torch.Generator()
    for bad in ({"records": 5, "keys": 4}, {"records": 33}, {"keys": 49}, {"fillers": 415}, {"records": 0}):
        with pytest.raises(ValueError):
            FULL.batch(1, generator, **bad)
    with pytest.raises(ValueError):
        FULL.batch(1, generator, size=3, fillers=3)  # the filler axis given twice


def test_curriculum_grows_one_axis_at_a_time_from_its_start_to_its_end():
    axes = [Axis("records", 2, 6), Axis("keys", 16, 16), Axis("filler", 0, 3)]
    curriculum = AxisCurriculum(axes, window=2, advance_at=0.9, growth=1.5, spread=0.0)
    rng = random.Random(0)
    assert curriculum.sizes(rng) == {"records": 2, "keys": 16, "filler": 0}
    assert not curriculum.advance([1.0]) and not curriculum.advance([0.95, 0.8])  # short window, mean 0.875
    caps = []
    while not curriculum.done:
        assert curriculum.advance([0.0, 0.9, 0.9])  # only the last window counts
        caps.append((curriculum.axes[curriculum.index].name, curriculum.cap))
    # records 2 -> 3 -> 4 -> 6 (x1.5, at least +1); keys is already at its end; filler 0 -> 1 -> 2 -> 3
    assert caps == [("records", 3), ("records", 4), ("filler", 0), ("filler", 1), ("filler", 2), ("filler", 3)]
    assert curriculum.sizes(rng) == {"records": 6, "keys": 16, "filler": 3}
    assert not curriculum.advance([1.0, 1.0])
    resumed = AxisCurriculum(axes, window=2, advance_at=0.9, growth=1.5)
    resumed.restore(curriculum.state())
    assert (resumed.index, resumed.cap) == (2, 3.0)


def test_curriculum_draws_the_growing_axis_in_the_spread_below_its_cap():
    curriculum = AxisCurriculum([Axis("records", 2, 64)], window=1, advance_at=0.5, growth=1.0, spread=0.5)
    curriculum.cap = 40.0
    rng = random.Random(1)
    assert {curriculum.sizes(rng)["records"] for _ in range(2000)} == set(range(20, 41))
    with pytest.raises(ValueError):
        Axis.parse("records:8:4")
    with pytest.raises(ValueError):
        AxisCurriculum([Axis("records", 2, 4), Axis("records", 4, 8)], 1, 0.5, 1.5)


def test_key_symbols_in_use_are_at_least_the_records():
    assert batch_sizes({"records": 24, "keys": 16, "filler": 0}) == {"records": 24, "keys": 24, "fillers": 0}
    assert batch_sizes({"records": 4, "keys": 16}) == {"records": 4, "keys": 16}


class _Echo(torch.nn.Module):
    """Logits that predict the input token itself (a stand-in model: the loss only needs logits)."""

    def forward(self, ids):
        return type("Out", (), {"logits": torch.nn.functional.one_hot(ids, 20).float()})()


def test_full_mask_rows_mask_the_whole_answer_and_zero_keeps_the_papers_draws():
    prompts, answers = torch.zeros(64, 3, dtype=torch.long), torch.ones(64, 8, dtype=torch.long)
    plain = sft_loss(_Echo(), prompts, answers, torch.Generator().manual_seed(5), 19, return_predictions=True)
    zero = sft_loss(
        _Echo(), prompts, answers, torch.Generator().manual_seed(5), 19, return_predictions=True, full_mask_rows=0.0
    )
    assert torch.equal(plain[2], zero[2]) and plain[0] == zero[0]
    _, _, masked = sft_loss(
        _Echo(), prompts, answers, torch.Generator().manual_seed(5), 19, return_predictions=True, full_mask_rows=0.5
    )
    full = masked.all(dim=1)
    assert 16 < full.sum() < 48  # about half the rows fully masked
    _, _, all_masked = sft_loss(
        _Echo(), prompts, answers, torch.Generator().manual_seed(5), 19, return_predictions=True, full_mask_rows=1.0
    )
    assert all_masked.all()
