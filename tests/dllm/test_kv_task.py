"""The key-value recall task (MQAR) and the trainer's size curriculum, against hand-built examples."""

from __future__ import annotations

import argparse
import random

import pytest
import torch

from diffaccel.dllm.tasks.kv import KeyValueTask, KeyValueTokenizer
from diffaccel.dllm.tasks.recall import RecallTask
from diffaccel.dllm.train_recall import curriculum_length, next_cap

SMALL = KeyValueTask(n_records=3, gen_length=2, n_keys=10, n_values=4)  # keys 0..9, values 10..13, BOS 14


def test_encode_lays_out_records_queries_and_answer_by_hand():
    keys, values, queried = torch.tensor([[5, 2, 9]]), torch.tensor([[11, 10, 13]]), torch.tensor([[2, 0]])
    prompts, answers = SMALL.encode(keys, values, queried)
    bos, query = 14, 15
    assert (SMALL.bos, SMALL.query, SMALL.eos, SMALL.mask, SMALL.copy, SMALL.vocab_size) == (14, 15, 16, 17, 18, 24)
    assert prompts.tolist() == [[bos, 5, 11, 2, 10, 9, 13, query, 9, 5]]
    assert answers.tolist() == [[13, 11]]  # v(k9) = v3, v(k5) = v1, in query order
    assert SMALL.prompt_length == prompts.shape[1] == 10
    assert SMALL.render(prompts[0]) == "<s> k5 v1 k2 v0 k9 v3 ? k9 k5"


def test_tokenizer_reads_the_rendered_prompt_back():
    prompt = "k5 v1 k2 v0 k9 v3 ? k9 k5"
    assert KeyValueTokenizer(SMALL)(prompt)["input_ids"].tolist() == [[14, 5, 11, 2, 10, 9, 13, 15, 9, 5]]
    for bad in (
        "k5 v1 k2 v0 k9 v3 ? k9 k7",
        "k5 v1 k5 v0 k9 v3 ? k9 k5",
        "k5 v1 k2 v0 ? k2 k5",
        "k5 v9 k2 v0 k9 v3 ? k9 k5",
    ):
        with pytest.raises(ValueError):
            KeyValueTokenizer(SMALL)(bad)


def test_default_lengths_and_batch_invariants():
    task = KeyValueTask()
    prompts, answers = task.batch(16, torch.Generator().manual_seed(0))
    assert (task.prompt_length, task.gen_length) == (514, 32) == (prompts.shape[1], answers.shape[1])
    n = task.n_records
    keys, values = prompts[:, 1 : 2 * n + 1 : 2], prompts[:, 2 : 2 * n + 2 : 2]
    assert (prompts[:, 0] == task.bos).all() and (prompts[:, 2 * n + 1] == task.query).all()
    assert ((keys >= 0) & (keys < task.n_keys)).all() and ((values >= task.n_keys) & (values < task.bos)).all()
    queries = prompts[:, 2 * n + 2 :]
    for row in range(16):
        lookup = dict(zip(keys[row].tolist(), values[row].tolist()))
        assert len(lookup) == n  # distinct keys
        assert len(set(queries[row].tolist())) == task.gen_length  # distinct queries, each a record's key
        assert answers[row].tolist() == [lookup[q] for q in queries[row].tolist()]


def test_curriculum_sizes_below_the_answer_length_query_with_replacement():
    task = KeyValueTask()
    prompts, answers = task.batch(4, torch.Generator().manual_seed(1), size=5)
    assert prompts.shape[1] == task.prompt_length_for(5) == 2 * 5 + 2 + 32
    queries = prompts[:, 12:]
    for row in range(4):
        lookup = dict(zip(prompts[row, 1:11:2].tolist(), prompts[row, 2:11:2].tolist()))
        assert answers[row].tolist() == [lookup[q] for q in queries[row].tolist()]
    with pytest.raises(ValueError):
        task.batch(1, torch.Generator(), size=task.n_keys + 1)
    with pytest.raises(ValueError):
        KeyValueTask(n_records=300, n_keys=256)


def test_copy_rows_answer_the_queried_keys_after_the_copy_separator():
    task = KeyValueTask()
    plain, _ = task.batch(64, torch.Generator().manual_seed(3), size=40)
    prompts, answers = task.batch(64, torch.Generator().manual_seed(3), size=40, copy_fraction=0.5)
    copy = prompts[:, -33] == task.copy
    assert 0 < copy.sum() < 64 and ((prompts[:, -33] == task.query) | copy).all()
    assert torch.equal(answers[copy], prompts[copy, -32:])  # the queried keys, in order
    assert torch.equal(prompts[~copy], plain[~copy])  # the other rows are the task's own rows


def test_progress_accuracy_counts_every_masked_token_for_kv_and_visible_left_neighbours_for_recall():
    answers = torch.tensor([[1, 2, 3, 4]])
    predicted = torch.tensor([[1, 0, 3, 0]])
    masked = torch.tensor([[True, True, False, True]])
    assert KeyValueTask().progress_accuracy(predicted, answers, masked) == pytest.approx(1 / 3)
    # recall counts masked tokens whose left neighbour is visible: position 0 (the cue) and position 3
    assert RecallTask().progress_accuracy(predicted, answers, masked) == pytest.approx(1 / 2)


def _curriculum_args(**overrides) -> argparse.Namespace:
    return argparse.Namespace(
        **{"curriculum_window": 4, "curriculum_advance_at": 0.9, "curriculum_growth": 1.5, **overrides}
    )


def test_curriculum_grows_the_cap_only_after_an_accurate_window_and_stops_at_the_task_size():
    task, args = KeyValueTask(n_records=40), _curriculum_args()
    assert next_cap(16.0, [1.0, 1.0, 1.0], args, task) == 16.0  # window not full yet
    assert next_cap(16.0, [0.95, 0.95, 0.85, 0.8], args, task) == 16.0  # mean 0.8875 < 0.9
    assert next_cap(16.0, [0.0, 0.95, 0.95, 0.95, 0.85], args, task) == 24.0  # only the last window counts
    assert next_cap(16.0, [0.95, 0.95, 0.95, 0.85], args, task) == 24.0  # mean 0.925: grow by 1.5
    assert next_cap(32.0, [1.0] * 4, args, task) == 40.0  # capped at n_records
    assert next_cap(40.0, [1.0] * 4, args, task) == 40.0


def test_curriculum_sizes_are_uniform_in_the_spread_below_the_cap():
    task, rng = KeyValueTask(), random.Random(0)
    sizes = {curriculum_length(100.0, task, rng, spread=0.5) for _ in range(2000)}
    assert sizes == set(range(50, 101))
    assert {curriculum_length(3.0, task, rng, spread=0.9) for _ in range(50)} == {2, 3}  # never below min_size
    assert curriculum_length(240.0, task, rng, spread=0.0) == 240


FILLED = KeyValueTask(n_records=2, gen_length=2, n_keys=4, n_values=3, n_filler=3, n_filler_symbols=2)
# keys 0..3, values 4..6, fillers 7..8, BOS 9, QUERY 10


def test_filler_variant_lays_out_records_among_fillers_by_hand():
    keys, values, queried = torch.tensor([[3, 1]]), torch.tensor([[6, 4]]), torch.tensor([[1, 0]])
    body = torch.tensor([[8, 3, 6, 7, 7, 1, 4]])  # f1 (k3 v2) f0 f0 (k1 v0)
    prompts, answers = FILLED.encode(keys, values, queried, body)
    assert (FILLED.first_filler, FILLED.bos, FILLED.query, FILLED.mask, FILLED.vocab_size) == (7, 9, 10, 12, 16)
    assert prompts.tolist() == [[9, 8, 3, 6, 7, 7, 1, 4, 10, 1, 3]] and answers.tolist() == [[4, 6]]
    assert FILLED.prompt_length == 1 + 4 + 3 + 1 + 2 == prompts.shape[1]
    text = FILLED.render(prompts[0])
    assert text == "<s> f1 k3 v2 f0 f0 k1 v0 ? k1 k3"
    assert KeyValueTokenizer(FILLED)(text)["input_ids"].tolist() == prompts.tolist()
    for bad in ("f1 k3 v2 f0 k1 v0 ? k1 k3", "f1 k3 v2 f0 f0 f0 k1 v0 ? k1 k3", "f1 k3 f0 v2 f0 k1 v0 ? k1 k3"):
        with pytest.raises(ValueError):  # a filler short, one too many, a filler inside a record
            KeyValueTokenizer(FILLED)(bad)


def test_filler_variant_batches_keep_records_adjacent_and_place_them_anywhere():
    task = KeyValueTask(n_records=32, gen_length=32, n_keys=32, n_values=64, n_filler=414, n_filler_symbols=32)
    assert (task.prompt_length, task.size, task.min_size) == (512, 414, 0)
    prompts, answers = task.batch(64, torch.Generator().manual_seed(0))
    assert prompts.shape == (64, 512) and answers.shape == (64, 32)
    first_record = []
    for row in range(64):
        body = prompts[row, 1:479].tolist()
        fillers = [t for t in body if task.first_filler <= t < task.n_content]
        assert len(fillers) == 414
        at = [i for i, t in enumerate(body) if t < task.n_keys]
        assert len(at) == 32 and all(task.n_keys <= body[i + 1] < task.first_filler for i in at)
        lookup = {body[i]: body[i + 1] for i in at}
        assert answers[row].tolist() == [lookup[q] for q in prompts[row, 480:].tolist()]
        assert sorted(prompts[row, 480:].tolist()) == sorted(lookup)  # every record queried once
        first_record.append(at[0])
    assert min(first_record) < 10 and max(first_record) > 20  # the records' place varies from row to row
    short, _ = task.batch(4, torch.Generator().manual_seed(0), size=0)  # the curriculum's first size: no filler
    assert short.shape[1] == task.prompt_length_for(0) == 1 + 64 + 1 + 32
    assert not ((short >= task.first_filler) & (short < task.n_content)).any()
    with pytest.raises(ValueError):
        task.batch(1, torch.Generator(), size=415)
    with pytest.raises(ValueError):
        KeyValueTask(n_filler=10)  # fillers need filler symbols


COLUMNS = KeyValueTask(
    n_records=4, gen_length=4, n_keys=8, n_values=6, n_filler=5, n_filler_symbols=3, layout="columns"
)  # keys 0..7, values 8..13, fillers 14..16, BOS 17, QUERY 18


def test_columns_layout_puts_every_value_n_records_after_its_key_and_reads_back():
    text = "f1 f1 k2 k3 k4 k6 v2 v5 v1 v5 f1 f1 f0 ? k2 k4 k6 k3"
    prompts = KeyValueTokenizer(COLUMNS)(text)["input_ids"]
    assert prompts.tolist() == [[17, 15, 15, 2, 3, 4, 6, 10, 13, 9, 13, 15, 15, 14, 18, 2, 4, 6, 3]]
    assert COLUMNS.render(prompts[0]) == "<s> " + text
    for bad in (
        "f1 f1 k2 k3 k4 v2 v5 v1 v5 f1 f1 f0 f0 ? k2 k4 k3 k2",  # a key column of 3
        "f1 f1 k2 k3 k4 f0 v2 v5 v1 v5 f1 f1 f0 ? k2 k4 k3 k2",  # a value without its key slot
        "f1 f1 k2 k3 k4 k6 v2 v5 v1 v5 f1 k1 f0 ? k2 k4 k6 k3",  # a key outside the columns
    ):
        with pytest.raises(ValueError):
            KeyValueTokenizer(COLUMNS)(bad)
    with pytest.raises(ValueError):
        KeyValueTask(layout="columns")  # needs filler symbols


def test_columns_batches_hold_aligned_columns_at_any_place_and_answer_by_lookup():
    task = KeyValueTask(
        n_records=32, gen_length=32, n_keys=32, n_values=64, n_filler=414, n_filler_symbols=32, layout="columns"
    )
    prompts, answers = task.batch(32, torch.Generator().manual_seed(0))
    assert prompts.shape == (32, 512) and task.prompt_length == 512
    starts = []
    for row in range(32):
        body = prompts[row, 1:479].tolist()
        at = [i for i, t in enumerate(body) if t < task.n_keys]
        assert at == list(range(at[0], at[0] + 32))  # one key column of 32 records
        assert all(task.n_keys <= body[i + 32] < task.first_filler for i in at)  # each value 32 tokens later
        lookup = {body[i]: body[i + 32] for i in at}
        assert answers[row].tolist() == [lookup[q] for q in prompts[row, 480:].tolist()]
        starts.append(at[0])
    assert min(starts) < 100 and max(starts) > 300  # the block's place varies
    short, answers = task.batch(16, torch.Generator().manual_seed(1), records=3, keys=5, fillers=7)
    assert short.shape[1] == 1 + 64 + 7 + 1 + 32
    for row in range(16):
        body = short[row, 1:72].tolist()
        at = [i for i, t in enumerate(body) if t < task.n_keys]
        assert len(at) == 3 and all(body[i] < 5 and task.n_keys <= body[i + 32] < task.first_filler for i in at)
        values = [i for i, t in enumerate(body) if task.n_keys <= t < task.first_filler]
        assert values == [i + 32 for i in at]  # the other slots of both columns hold fillers
        lookup = {body[i]: body[i + 32] for i in at}
        assert answers[row].tolist() == [lookup[q] for q in short[row, -32:].tolist()]


ECHO = KeyValueTask(n_records=3, gen_length=4, n_keys=10, n_values=4, echo=True)  # keys 0..9, values 10..13


def test_echo_answers_list_each_queried_key_before_its_value():
    keys, values, queried = torch.tensor([[5, 2, 9]]), torch.tensor([[11, 10, 13]]), torch.tensor([[2, 0]])
    prompts, answers = ECHO.encode(keys, values, queried)
    bos, query = 14, 15
    assert prompts.tolist() == [[bos, 5, 11, 2, 10, 9, 13, query, 9, query, 5]]
    assert answers.tolist() == [[9, 13, 5, 11]]  # k9 v3 k5 v1
    assert ECHO.n_queries == 2 and ECHO.prompt_length == prompts.shape[1] == 11
    assert ECHO.render(prompts[0]) == "<s> k5 v1 k2 v0 k9 v3 ? k9 ? k5"
    for text in ("k5 v1 k2 v0 k9 v3 ? k9 ? k5", "k5 v1 k2 v0 k9 v3 ? k9 k5"):
        assert KeyValueTokenizer(ECHO)(text)["input_ids"].tolist() == prompts.tolist()
    with pytest.raises(ValueError):
        KeyValueTask(n_records=3, gen_length=3, echo=True)  # an odd answer cannot pair keys with values
    with pytest.raises(ValueError):
        ECHO.batch(2, torch.Generator(), copy_fraction=0.5)


def test_echo_batches_answer_by_lookup_and_progress_counts_values_after_a_visible_key():
    task = KeyValueTask(
        n_records=32, gen_length=64, n_keys=32, n_values=64, n_filler=414, n_filler_symbols=32, echo=True
    )
    prompts, answers = task.batch(8, torch.Generator().manual_seed(0))
    assert prompts.shape == (8, 1 + 64 + 414 + 64) and answers.shape == (8, 64)
    for row in range(8):
        body = prompts[row, 1:479].tolist()
        lookup = {body[i]: body[i + 1] for i, t in enumerate(body) if t < task.n_keys}
        asked = prompts[row, 479:].tolist()
        assert asked[0::2] == [task.query] * 32 and answers[row, 0::2].tolist() == asked[1::2]
        assert answers[row, 1::2].tolist() == [lookup[q] for q in asked[1::2]]
    answers = torch.tensor([[1, 2, 3, 4, 5, 6]])
    predicted = torch.tensor([[0, 2, 0, 0, 5, 6]])
    masked = torch.tensor([[False, True, True, True, False, True]])
    # counted: value 2 (key visible, right) and value 6 (key visible, right); value 4's key is masked
    small = KeyValueTask(n_records=3, gen_length=6, n_keys=10, n_values=4, echo=True)
    assert small.progress_accuracy(predicted, answers, masked) == 1.0
    assert small.progress_accuracy(torch.zeros_like(predicted), answers, masked) == 0.0
