"""Multi-query associative recall (MQAR): look several keys up in a long list of key-value records.

MQAR is the synthetic recall task of Arora et al. 2023, "Zoology: Measuring and Improving Recall in
Efficient Language Models" (arXiv 2312.04927). Here it is laid out for a masked-diffusion LM with a
fixed-length answer::

    BOS  k_1 v_1  k_2 v_2 ... k_N v_N  QUERY  q_1 ... q_M  |  v(q_1) ... v(q_M)
    <----------------------- prompt ------------------------>  <---- answer ---->

The ``N`` record keys are distinct (drawn from ``n_keys`` key symbols), values are drawn from a separate
set of ``n_values`` symbols, and the ``M`` queries are distinct keys of the records in random order.
The answer is the value of each queried key, in query order. Every answer token is a content lookup
anywhere in the prompt (a record may be hundreds of tokens away), and the answer tokens are independent
given the prompt, so parallel decoding has something to gain and a cache or sparse attention that loses
far context loses accuracy. The defaults (240 records, 32 queries) give 514-token prompts and 32-token
answers. Vocabulary: keys ``0..n_keys-1``, values ``n_keys..n_keys+n_values-1``, filler symbols (below), then
BOS, QUERY, EOS, MASK, COPY (training-only copy rows).

Filler variant (ours, ``n_filler > 0``): the records stay few (e.g. 32 records over 32-64 key symbols, all
queried) and the prompt is made long by ``n_filler`` filler tokens, drawn from their own ``n_filler_symbols``
symbols; each record ``k v`` stays one adjacent pair, at a random place among the fillers::

    BOS  f f k_1 v_1 f f f k_2 v_2 f ... f  QUERY  q_1 ... q_M  |  v(q_1) ... v(q_M)

Every answer token is still a content lookup anywhere in the (500+ token) prompt, but among few key symbols:
the lookup's content match learns after a plateau whose length grows with the number of key symbols, so
with 256 keys it did not form in our CPU budget while with 16-32 it does. The curriculum axis of this
variant is the filler count (records and queries stay fixed), so the lookup is learnt in short prompts first.

Column layout (ours, ``layout="columns"``, filler variant only): the records are written as two aligned
columns, all keys then all values, each ``n_records`` slots wide, so every value stands ``n_records`` tokens
after its key; this block sits at a random place among the fillers::

    BOS  f ... f  k_1 ... k_N  v_1 ... v_N  f ... f  QUERY  q_1 ... q_M  |  v(q_1) ... v(q_M)

With ``n_records == gen_length`` a value is as far from its key as an answer slot from its query, so one
fixed-offset attention head can bring both the key to its value and the query to its answer slot, and the
lookup is a match of the two in the same subspace (in the pair layout these are two different heads, offset 1
and offset ``gen_length``). With fewer records than slots (a curriculum), the records take random slots and the
empty slots hold fillers in both columns.

Echo answers (ours, ``echo=True``): the answer lists every queried key before its value, ``q_1 v(q_1) q_2
v(q_2) ...`` (``gen_length`` tokens for ``gen_length / 2`` queries), and the prompt's queries each follow a
``QUERY`` token (``? q_1 ? q_2 ...``, so each echoed key is a copy over one fixed distance). Each value then
stands right after its key in the answer, as a value follows its key in a record, so one previous-token
head can serve both sides of the match, as in the one setting whose lookup formed here (a single answer
slot right after its query). Neither layout learnt the lookup in our runs (docs/dllm/results/kv-curriculum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import FixedLengthTask, SymbolTokenizer, SymbolVocabulary, masked_accuracy


@dataclass(frozen=True)
class KeyValueTask(SymbolVocabulary, FixedLengthTask):
    """``n_records`` key-value records, ``gen_length`` distinct queried keys, their values as the answer."""

    name: ClassVar[str] = "kv"
    n_extra_specials: ClassVar[int] = 1  # COPY
    n_records: int = 240
    gen_length: int = 32
    n_keys: int = 256
    n_values: int = 256
    n_filler: int = 0  # filler tokens per prompt (the filler variant, ours); 0: records only
    n_filler_symbols: int = 0
    layout: str = "pairs"  # "pairs" (k v k v ...) or "columns" (ours: all keys, then all values; filler variant)
    echo: bool = False  # ours: the answer is q_1 v(q_1) q_2 v(q_2) ... (module docstring)

    def __post_init__(self) -> None:
        if self.echo and self.gen_length % 2:
            raise ValueError(
                f"echo answers pair each key with its value: gen_length must be even, got {self.gen_length}"
            )
        if self.layout not in ("pairs", "columns"):
            raise ValueError(f"layout must be 'pairs' or 'columns', got {self.layout!r}")
        if self.layout == "columns" and not self.n_filler_symbols:
            raise ValueError("the columns layout needs filler symbols (n_filler, n_filler_symbols >= 1)")
        for name in ("n_records", "gen_length", "n_keys", "n_values"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_filler < 0 or (self.n_filler > 0) != (self.n_filler_symbols > 0):
            raise ValueError(
                f"n_filler={self.n_filler} and n_filler_symbols={self.n_filler_symbols}: both 0, or both >= 1"
            )
        if self.n_records > self.n_keys:
            raise ValueError(f"n_records={self.n_records} needs as many distinct keys (n_keys={self.n_keys})")
        # gen_length > n_records (a curriculum stage of ours): keys are then queried with replacement

    @property
    def n_queries(self) -> int:
        """Queried keys per prompt: the answer length, or half of it with echo answers."""
        return self.gen_length // 2 if self.echo else self.gen_length

    @property
    def lookup_positions(self) -> torch.Tensor:
        """Answer positions that are lookups (bool ``[gen_length]``): all, or the values of echo answers."""
        positions = torch.ones(self.gen_length, dtype=torch.bool)
        if self.echo:
            positions[0::2] = False
        return positions

    @property
    def n_content(self) -> int:
        return self.n_keys + self.n_values + self.n_filler_symbols

    @property
    def first_filler(self) -> int:
        return self.n_keys + self.n_values

    @property
    def copy(self) -> int:
        """Separator of the training-only copy rows (see :meth:`batch`)."""
        return self.mask + 1

    @property
    def size(self) -> int:
        """The task's size along its curriculum axis: records per prompt, or fillers in the filler variant."""
        return self.n_filler if self.n_filler else self.n_records

    @property
    def min_size(self) -> int:
        """Smallest curriculum size: 2 records (below gen_length, keys are queried with replacement), or no
        filler at all in the filler variant."""
        return 0 if self.n_filler else 2

    def prompt_length_for(self, size: int) -> int:
        """Prompt length at curriculum ``size`` (records, or fillers in the filler variant)."""
        if self.n_filler:
            return 2 * self.n_records + size + 1 + self.query_section
        return 2 * size + 1 + self.query_section

    @property
    def query_section(self) -> int:
        """Tokens after the records: ``? q_1 ... q_M``, or ``? q_1 ? q_2 ... ? q_M`` with echo answers."""
        return 2 * self.n_queries if self.echo else 1 + self.n_queries

    @property
    def prompt_length(self) -> int:
        return self.prompt_length_for(self.size)

    def batch(
        self,
        count: int,
        generator: torch.Generator,
        size: int | None = None,
        copy_fraction: float = 0.0,
        records: int | None = None,
        keys: int | None = None,
        fillers: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prompts [count, P], answers [count, G])`` of fresh random records and queries.

        ``size`` (records per prompt, default: the task's) lets a training curriculum start with fewer; with
        fewer records than queries (curriculum only) keys are queried with replacement. In the filler variant
        ``size`` is the number of fillers instead (the records stay ``n_records``).
        ``records``, ``keys`` and ``fillers`` (ours, a curriculum over several axes) set the record count, the
        number of key symbols the keys are drawn from (the first ``keys``, at least ``records``) and the filler
        count (filler variant) directly; each defaults to the task's own.
        ``copy_fraction`` (a training aid of ours, default 0) turns that share of the rows into copy rows:
        separator ``copy`` instead of ``query``, and the answer is the queried keys themselves. Each answer
        slot finds its query key at the fixed distance ``gen_length`` before it; a copy row teaches that
        step alone, which the lookup needs but, trained only end to end, did not find in 1000+ steps.
        """
        if size is not None:
            if (fillers if self.n_filler else records) is not None:
                raise ValueError("give the curriculum size either as size or by its axis, not both")
            records, fillers = (records, size) if self.n_filler else (size, fillers)
        n = self.n_records if records is None else records
        f = self.n_filler if fillers is None else fillers
        k = self.n_keys if keys is None else keys
        top = self.n_records if self.n_filler else self.n_keys
        if not 1 <= n <= top or (not self.n_filler and n < self.min_size):
            raise ValueError(f"records must be in [{self.min_size or 1}, {top}], got {n}")
        if not n <= k <= self.n_keys:
            raise ValueError(f"key symbols must be in [records={n}, n_keys={self.n_keys}], got {k}")
        if not 0 <= f <= self.n_filler:
            raise ValueError(f"fillers must be in [0, {self.n_filler}], got {f}")
        keys_ = torch.rand(count, k, generator=generator).argsort(dim=1)[:, :n]
        values = torch.randint(self.n_keys, self.n_keys + self.n_values, (count, n), generator=generator)
        if n >= self.n_queries:
            queried = torch.rand(count, n, generator=generator).argsort(dim=1)[:, : self.n_queries]
        else:
            queried = torch.randint(0, n, (count, self.n_queries), generator=generator)
        body = None
        if self.layout == "columns":
            body = self.columns(keys_, values, f, generator)
        elif self.n_filler:
            body = torch.randint(self.first_filler, self.n_content, (count, f), generator=generator)
            body = self.scatter_records(keys_, values, body, generator)
        prompts, answers = self.encode(keys_, values, queried, body)
        if copy_fraction > 0:
            if self.echo:
                raise ValueError("copy rows are for the plain answer layout (echo answers copy the keys already)")
            rows = torch.rand(count, generator=generator) < copy_fraction
            prompts[rows, -self.gen_length - 1] = self.copy
            answers[rows] = prompts[rows, -self.gen_length :]
        return prompts, answers

    def columns(
        self, keys: torch.Tensor, values: torch.Tensor, fillers: int, generator: torch.Generator
    ) -> torch.Tensor:
        """The column layout's body ``[B, 2 n_records + fillers]``: the key column, then the value column (the
        ``n`` records in random slots of ``n_records``, fillers in the empty slots of both), at a uniformly
        random place among ``fillers`` filler tokens."""
        count, n = keys.shape
        width = self.n_records
        symbols = lambda shape: torch.randint(self.first_filler, self.n_content, shape, generator=generator)  # noqa: E731
        slots = torch.rand(count, width, generator=generator).argsort(dim=1)[:, :n]
        key_col, value_col = symbols((count, width)), symbols((count, width))
        key_col.scatter_(1, slots, keys)
        value_col.scatter_(1, slots, values)
        block = torch.cat([key_col, value_col], dim=1)
        before = torch.randint(0, fillers + 1, (count,), generator=generator)
        padding = symbols((count, fillers))
        rows = []
        for row in range(count):
            at = int(before[row])
            rows.append(torch.cat([padding[row, :at], block[row], padding[row, at:]]))
        return torch.stack(rows)

    @staticmethod
    def scatter_records(
        keys: torch.Tensor, values: torch.Tensor, fillers: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The body ``[B, 2n + F]``: the ``n`` records (adjacent ``k v`` pairs, in their order) at random places
        among the ``F`` fillers, every interleaving equally likely."""
        count, n = keys.shape
        units = torch.cat([torch.stack([keys, values], dim=2), torch.stack([fillers, -torch.ones_like(fillers)], 2)], 1)
        order = torch.rand(count, units.shape[1], generator=generator).argsort(dim=1)
        is_record = torch.zeros(count, units.shape[1], dtype=torch.bool)
        is_record[:, :n] = True
        slots = is_record.gather(1, order)  # which of the shuffled slots hold a record
        placed = torch.empty_like(units)
        placed[slots] = units[:, :n].reshape(-1, 2)  # records fill their slots in record order
        placed[~slots] = units[:, n:].reshape(-1, 2)
        flat = placed.reshape(count, -1)
        return flat[flat >= 0].reshape(count, 2 * n + fillers.shape[1])

    def encode(
        self, keys: torch.Tensor, values: torch.Tensor, queried: torch.Tensor, body: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token rows from ``keys [B, n]`` (distinct key ids per row), ``values [B, n]`` (value ids) and
        ``queried [B, G]`` (distinct record indices, in query order); ``body`` (filler variant: the records
        among fillers, :meth:`scatter_records`) replaces the plain ``k v`` list."""
        count, n = keys.shape
        col = lambda token: torch.full((count, 1), token, dtype=torch.long)  # noqa: E731
        records = torch.stack([keys, values], dim=2).reshape(count, 2 * n) if body is None else body
        asked, answers = keys.gather(1, queried), values.gather(1, queried)
        if self.echo:  # ? q_1 ? q_2 ... | q_1 v(q_1) q_2 v(q_2) ...
            section = torch.stack([torch.full_like(asked, self.query), asked], dim=2).reshape(count, -1)
            prompts = torch.cat([col(self.bos), records, section], dim=1)
            return prompts, torch.stack([asked, answers], dim=2).reshape(count, -1)
        prompts = torch.cat([col(self.bos), records, col(self.query), asked], dim=1)
        return prompts, answers

    def progress_accuracy(self, predicted: torch.Tensor, answers: torch.Tensor, masked: torch.Tensor) -> float:
        """Accuracy on all masked answer tokens: each is one lookup, whatever else is visible. With echo answers:
        on the masked values whose echoed key is visible, the lookup stepwise decoding relies on (the echoed
        keys themselves are copies, decoded first)."""
        if self.echo:
            counted = torch.zeros_like(masked)
            counted[:, 1::2] = masked[:, 1::2] & ~masked[:, 0::2]
            return masked_accuracy(predicted, answers, counted)
        return masked_accuracy(predicted, answers, masked)

    def name_of(self, token: int) -> str:
        names = {**self.special_names(), self.copy: "="}
        if token in names:
            return names[token]
        if token < self.n_keys:
            return f"k{token}"
        if token < self.n_keys + self.n_values:
            return f"v{token - self.n_keys}"
        if token < self.n_content:
            return f"f{token - self.first_filler}"
        return f"<{token}>"

    def render(self, tokens: torch.Tensor) -> str:
        """Readable form of a token row: keys ``k17``, values ``v3``, fillers ``f2``, specials ``<s>``, ``?``, ``</s>``, ``_``."""
        return " ".join(self.name_of(int(t)) for t in tokens)


class KeyValueTokenizer(SymbolTokenizer):
    """Reads prompts like ``"k5 v3 k17 v0 ... ? k17 k5 ..."`` (the records, ``?``, the queried keys); in the
    filler variant fillers ``f2`` may stand anywhere between the records (``"f2 k5 v3 f0 f0 k17 v0 ..."``)."""

    def _symbol(self, text: str, prefix: str, count: int) -> int:
        if not text.startswith(prefix) or not text[1:].isdigit() or int(text[1:]) >= count:
            raise ValueError(f"expected {prefix}0..{prefix}{count - 1}, got {text!r}")
        return int(text[1:])

    def _body(self, tokens: list[str]) -> tuple[list[int], list[int], list[int]]:
        """Record keys, values and the body's token ids (records as ``k v`` pairs, fillers between them)."""
        task, keys, values, body, at = self.task, [], [], [], 0
        while at < len(tokens):
            if tokens[at].startswith("f") and task.n_filler:
                body.append(task.first_filler + self._symbol(tokens[at], "f", task.n_filler_symbols))
                at += 1
                continue
            if at + 1 == len(tokens):
                raise ValueError(f"record key {tokens[at]!r} has no value")
            keys.append(self._symbol(tokens[at], "k", task.n_keys))
            values.append(task.n_keys + self._symbol(tokens[at + 1], "v", task.n_values))
            body += keys[-1:] + values[-1:]
            at += 2
        return keys, values, body

    def _columns(self, tokens: list[str]) -> tuple[list[int], list[int], list[int]]:
        """The column layout: fillers, a key column and a value column of ``n_records`` slots each (a slot of
        the key column holds a key exactly where the value column holds a value), fillers."""
        task, width = self.task, self.task.n_records
        kinds = "".join(t[:1] if t[:1] in "kvf" else "?" for t in tokens)
        start = kinds.find("k")
        key_slots, value_slots = kinds[start : start + width], kinds[start + width : start + 2 * width]
        if start < 0 or len(value_slots) != width or "v" in key_slots or "k" in value_slots:
            raise ValueError(f"expected a column of {width} key slots, then {width} value slots (k or f)")
        if [c == "k" for c in key_slots] != [c == "v" for c in value_slots]:
            raise ValueError("every key slot needs a value in the same slot of the value column")
        if "k" in kinds[start + 2 * width :] or "v" in kinds[:start] + kinds[start + 2 * width :]:
            raise ValueError("keys and values only inside the two columns")
        ids = []
        for token in tokens:
            prefix, base, count = {
                "k": ("k", 0, task.n_keys),
                "v": ("v", task.n_keys, task.n_values),
            }.get(token[:1], ("f", task.first_filler, task.n_filler_symbols))
            ids.append(base + self._symbol(token, prefix, count))
        keys = [ids[start + i] for i in range(width) if key_slots[i] == "k"]
        values = [ids[start + width + i] for i in range(width) if key_slots[i] == "k"]
        return keys, values, ids

    def encode(self, text: str) -> torch.Tensor:
        task = self.task
        records_text, mark, queries_text = text.replace("<s>", "").partition("?")
        if not mark or ("?" in queries_text and not task.echo):
            raise ValueError("expected 'k5 v3 k17 v0 ... ? k17 k5 ...' (records, '?', queried keys)")
        body_tokens = records_text.split()
        keys, values, body = (self._columns if task.layout == "columns" else self._body)(body_tokens)
        if len(keys) != task.n_records:
            raise ValueError(f"expected {task.n_records} records (key value pairs), got {len(keys)}")
        if len(body) - 2 * len(keys) != task.n_filler:
            raise ValueError(f"expected {task.n_filler} fillers, got {len(body) - 2 * len(keys)}")
        if len(set(keys)) != len(keys):
            raise ValueError("record keys must be distinct")
        queries = [self._symbol(t, "k", task.n_keys) for t in queries_text.split() if t != "?"]
        if len(queries) != task.n_queries or len(set(queries)) != len(queries) or not set(queries) <= set(keys):
            raise ValueError(f"expected {task.n_queries} distinct queried keys, each a record's key")
        prompts, _ = task.encode(
            torch.tensor([keys]),
            torch.tensor([values]),
            torch.tensor([[keys.index(q) for q in queries]]),
            torch.tensor([body]),
        )
        return prompts
