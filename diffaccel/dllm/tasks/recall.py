"""Passage recall: continue a long passage from a cue, a long-context masked-diffusion task.

The prompt is a passage of ``passage_length`` distinct symbols (a random sample of ``n_symbols``), then
a cue: one symbol of the passage. The answer is the ``gen_length`` symbols that follow the cue in the
passage. Every answer token depends on a stretch of the prompt that may lie anywhere in it, hundreds of
tokens away, so a cache or sparse attention that loses far context loses accuracy. Layout::

    BOS  s s s ... s  QUERY  c  |  a_1 a_2 ... a_G        (a_1 follows c in the passage, a_2 follows a_1, ...)
    <-- prompt (fixed length) -->  <---- answer --->

The defaults (a 512-symbol passage, 32-token answers) give 515-token prompts. Because the symbols of a
passage are distinct, each answer token is determined by the one before it (the cue for the first):
decoded left to right, every step is one exact lookup of the previous token in the passage (what an
"induction head" does). With a fixed ``cue_position`` the answer is always the same stretch of the
passage, so it is a copy over a fixed distance (about 500 tokens at the defaults): every answer token
still depends on one far-away prompt token, but finding it takes position, not content.
Vocabulary: symbols ``0..n_symbols-1``, then BOS, QUERY, EOS, MASK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import FixedLengthTask, SymbolTokenizer, SymbolVocabulary, masked_accuracy


@dataclass(frozen=True)
class RecallTask(SymbolVocabulary, FixedLengthTask):
    """A ``passage_length``-symbol passage of distinct symbols, a cue, and ``gen_length`` symbols to recall."""

    name: ClassVar[str] = "recall"
    passage_length: int = 512
    gen_length: int = 32
    n_symbols: int = 512
    cue_position: int | None = None  # a fixed cue position makes the task a fixed-distance copy

    def __post_init__(self) -> None:
        for name in ("passage_length", "gen_length", "n_symbols"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.passage_length > self.n_symbols:
            raise ValueError(
                f"passage_length={self.passage_length} needs as many distinct symbols (n_symbols={self.n_symbols})"
            )
        if self.passage_length < self.gen_length + 1:
            raise ValueError(
                f"passage_length={self.passage_length} cannot hold a cue and {self.gen_length} symbols after it"
            )
        if self.cue_position is not None and not 0 <= self.cue_position < self.passage_length - self.gen_length:
            raise ValueError(
                f"cue_position must be in [0, {self.passage_length - self.gen_length}), got {self.cue_position}"
            )

    @property
    def n_content(self) -> int:
        return self.n_symbols

    @property
    def size(self) -> int:
        """The task's size along its curriculum axis (passage symbols)."""
        return self.passage_length

    @property
    def min_size(self) -> int:
        """The shortest passage that holds a cue and the answer after it."""
        return self.gen_length + 1

    def prompt_length_for(self, passage_length: int) -> int:
        return passage_length + 3

    @property
    def prompt_length(self) -> int:
        return self.prompt_length_for(self.passage_length)

    def batch(
        self, count: int, generator: torch.Generator, size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prompts [count, P], answers [count, G])`` of fresh random passages and cues.

        ``size`` (passage symbols, default: the task's) lets a training curriculum start with shorter passages.
        """
        n = self.passage_length if size is None else size
        if not self.min_size <= n <= self.n_symbols:
            raise ValueError(f"passage_length must be in [{self.min_size}, {self.n_symbols}], got {n}")
        passages = torch.rand(count, self.n_symbols, generator=generator).argsort(dim=1)[:, :n]
        if self.cue_position is None:
            cue_at = torch.randint(0, n - self.gen_length, (count, 1), generator=generator)
        else:
            cue_at = torch.full((count, 1), self.cue_position, dtype=torch.long)
        return self.encode(passages, cue_at)

    def encode(self, passages: torch.Tensor, cue_at: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token rows from ``passages [B, n]`` (distinct symbols per row) and cue positions ``[B, 1]``."""
        count = passages.shape[0]
        col = lambda token: torch.full((count, 1), token, dtype=torch.long)  # noqa: E731
        cue = passages.gather(1, cue_at)
        prompts = torch.cat([col(self.bos), passages, col(self.query), cue], dim=1)
        answers = passages.gather(1, cue_at + 1 + torch.arange(self.gen_length)[None, :])
        return prompts, answers

    def progress_accuracy(self, predicted: torch.Tensor, answers: torch.Tensor, masked: torch.Tensor) -> float:
        """Accuracy on masked answer tokens whose left neighbour is visible (the cue for the first one):
        the single lookup each step of left-to-right stepwise decoding needs."""
        left_visible = torch.cat([torch.zeros_like(masked[:, :1]), masked[:, :-1]], dim=1).logical_not()
        return masked_accuracy(predicted, answers, masked & left_visible)

    def render(self, tokens: torch.Tensor) -> str:
        """Readable form of a token row: symbols as ``s17``, specials as ``<s>``, ``?``, ``</s>``, ``_``."""
        names = self.special_names()
        return " ".join(names.get(int(t), f"s{int(t)}" if int(t) < self.n_symbols else f"<{int(t)}>") for t in tokens)


class RecallTokenizer(SymbolTokenizer):
    """Reads prompts like ``"s5 s17 s2 ... ? s17"`` (the passage, ``?``, the cue)."""

    def _symbol(self, text: str) -> int:
        if not text.startswith("s") or not text[1:].isdigit() or int(text[1:]) >= self.task.n_symbols:
            raise ValueError(f"symbols are s0..s{self.task.n_symbols - 1}, got {text!r}")
        return int(text[1:])

    def encode(self, text: str) -> torch.Tensor:
        task = self.task
        try:
            passage_text, cue_text = text.replace("<s>", "").split("?")
        except ValueError as exc:
            raise ValueError("expected 's5 s17 s2 ... ? s17' (a passage, '?', a cue from it)") from exc
        passage = [self._symbol(t) for t in passage_text.split()]
        if len(passage) != task.passage_length or len(set(passage)) != len(passage):
            raise ValueError(f"expected a passage of {task.passage_length} distinct symbols, got {len(passage)}")
        cue = self._symbol(cue_text.strip())
        if cue not in passage[: task.passage_length - task.gen_length]:
            raise ValueError(
                f"the cue must be one of the first {task.passage_length - task.gen_length} passage symbols"
            )
        prompts, _ = task.encode(torch.tensor([passage]), torch.tensor([[passage.index(cue)]]))
        return prompts
