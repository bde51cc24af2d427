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
answers. Vocabulary: keys ``0..n_keys-1``, values ``n_keys..n_keys+n_values-1``, then BOS, QUERY, EOS, MASK,
COPY (training-only copy rows).
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

    def __post_init__(self) -> None:
        for name in ("n_records", "gen_length", "n_keys", "n_values"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_records > self.n_keys:
            raise ValueError(f"n_records={self.n_records} needs as many distinct keys (n_keys={self.n_keys})")
        if self.gen_length > self.n_records:
            raise ValueError(f"gen_length={self.gen_length} distinct queries need as many records ({self.n_records})")

    @property
    def n_content(self) -> int:
        return self.n_keys + self.n_values

    @property
    def copy(self) -> int:
        """Separator of the training-only copy rows (see :meth:`batch`)."""
        return self.mask + 1

    @property
    def size(self) -> int:
        """The task's size along its curriculum axis (records per prompt)."""
        return self.n_records

    min_size: ClassVar[int] = 2  # curriculum sizes below gen_length query keys with replacement

    def prompt_length_for(self, n_records: int) -> int:
        return 2 * n_records + 2 + self.gen_length

    @property
    def prompt_length(self) -> int:
        return self.prompt_length_for(self.n_records)

    def batch(
        self, count: int, generator: torch.Generator, size: int | None = None, copy_fraction: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prompts [count, P], answers [count, G])`` of fresh random records and queries.

        ``size`` (records per prompt, default: the task's) lets a training curriculum start with fewer; with
        fewer records than queries (curriculum only) keys are queried with replacement.
        ``copy_fraction`` (a training aid of ours, default 0) turns that share of the rows into copy rows:
        separator ``copy`` instead of ``query``, and the answer is the queried keys themselves. Each answer
        slot finds its query key at the fixed distance ``gen_length`` before it; a copy row teaches that
        step alone, which the lookup needs but, trained only end to end, did not find in 1000+ steps.
        """
        n = self.n_records if size is None else size
        if not self.min_size <= n <= self.n_keys:
            raise ValueError(f"records per prompt must be in [{self.min_size}, {self.n_keys}], got {n}")
        keys = torch.rand(count, self.n_keys, generator=generator).argsort(dim=1)[:, :n]
        values = torch.randint(self.n_keys, self.n_keys + self.n_values, (count, n), generator=generator)
        if n >= self.gen_length:
            queried = torch.rand(count, n, generator=generator).argsort(dim=1)[:, : self.gen_length]
        else:
            queried = torch.randint(0, n, (count, self.gen_length), generator=generator)
        prompts, answers = self.encode(keys, values, queried)
        if copy_fraction > 0:
            rows = torch.rand(count, generator=generator) < copy_fraction
            prompts[rows, -self.gen_length - 1] = self.copy
            answers[rows] = prompts[rows, -self.gen_length :]
        return prompts, answers

    def encode(
        self, keys: torch.Tensor, values: torch.Tensor, queried: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token rows from ``keys [B, n]`` (distinct key ids per row), ``values [B, n]`` (value ids) and
        ``queried [B, G]`` (distinct record indices, in query order)."""
        count, n = keys.shape
        col = lambda token: torch.full((count, 1), token, dtype=torch.long)  # noqa: E731
        records = torch.stack([keys, values], dim=2).reshape(count, 2 * n)
        prompts = torch.cat([col(self.bos), records, col(self.query), keys.gather(1, queried)], dim=1)
        return prompts, values.gather(1, queried)

    def progress_accuracy(self, predicted: torch.Tensor, answers: torch.Tensor, masked: torch.Tensor) -> float:
        """Accuracy on all masked answer tokens: each is one lookup, whatever else is visible."""
        return masked_accuracy(predicted, answers, masked)

    def name_of(self, token: int) -> str:
        names = {**self.special_names(), self.copy: "="}
        if token in names:
            return names[token]
        if token < self.n_keys:
            return f"k{token}"
        if token < self.n_keys + self.n_values:
            return f"v{token - self.n_keys}"
        return f"<{token}>"

    def render(self, tokens: torch.Tensor) -> str:
        """Readable form of a token row: keys ``k17``, values ``v3``, specials ``<s>``, ``?``, ``</s>``, ``_``."""
        return " ".join(self.name_of(int(t)) for t in tokens)


class KeyValueTokenizer(SymbolTokenizer):
    """Reads prompts like ``"k5 v3 k17 v0 ... ? k17 k5 ..."`` (the records, ``?``, the queried keys)."""

    def _symbol(self, text: str, prefix: str, count: int) -> int:
        if not text.startswith(prefix) or not text[1:].isdigit() or int(text[1:]) >= count:
            raise ValueError(f"expected {prefix}0..{prefix}{count - 1}, got {text!r}")
        return int(text[1:])

    def encode(self, text: str) -> torch.Tensor:
        task = self.task
        try:
            records_text, queries_text = text.replace("<s>", "").split("?")
        except ValueError as exc:
            raise ValueError("expected 'k5 v3 k17 v0 ... ? k17 k5 ...' (records, '?', queried keys)") from exc
        records = records_text.split()
        if len(records) != 2 * task.n_records:
            raise ValueError(f"expected {task.n_records} records (key value pairs), got {len(records) / 2:g}")
        keys = [self._symbol(t, "k", task.n_keys) for t in records[0::2]]
        values = [task.n_keys + self._symbol(t, "v", task.n_values) for t in records[1::2]]
        if len(set(keys)) != len(keys):
            raise ValueError("record keys must be distinct")
        queries = [self._symbol(t, "k", task.n_keys) for t in queries_text.split()]
        if len(queries) != task.gen_length or len(set(queries)) != len(queries) or not set(queries) <= set(keys):
            raise ValueError(f"expected {task.gen_length} distinct queried keys, each a record's key")
        prompts, _ = task.encode(
            torch.tensor([keys]), torch.tensor([values]), torch.tensor([[keys.index(q) for q in queries]])
        )
        return prompts
