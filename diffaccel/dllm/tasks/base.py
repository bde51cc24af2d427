"""What the synthetic dLLM tasks share: fixed-length prompts and answers, a seeded held-out set, exact match."""

from __future__ import annotations

from dataclasses import asdict

import torch


def masked_accuracy(predicted: torch.Tensor, answers: torch.Tensor, counted: torch.Tensor) -> float:
    """Share of the ``counted`` answer tokens that ``predicted`` gets right (0 counted: 0.0)."""
    return ((predicted == answers) & counted).sum().item() / max(1, counted.sum().item())


class FixedLengthTask:
    """Mixin for a task whose ``batch(count, generator)`` returns ``(prompts [count, P], answers [count, G])``
    of fixed lengths (so no padding masks are needed)."""

    gen_length: int
    name: str  # the ``diffaccel_task`` name of the task (class attribute)

    def batch(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def held_out(self, count: int, seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
        """A reproducible evaluation set (its own seed, independent of the training stream)."""
        return self.batch(count, torch.Generator().manual_seed(seed))

    def exact_match(self, generated: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """Per-row bool: the whole generated answer is correct."""
        return (generated == answers).all(dim=1)

    def describe(self) -> dict:
        """The ``diffaccel_task`` entry of a zoo folder: the task's name, fields and prompt length."""
        return {"name": self.name, **asdict(self), "prompt_length": self.prompt_length}


class SymbolVocabulary:
    """Ids of a task whose content symbols are ``0..n_content-1``, followed by BOS, QUERY, EOS, MASK and
    ``n_extra_specials`` more of the task's own."""

    n_extra_specials: int = 0

    @property
    def n_content(self) -> int:
        raise NotImplementedError

    @property
    def bos(self) -> int:
        return self.n_content

    @property
    def query(self) -> int:
        return self.n_content + 1

    @property
    def eos(self) -> int:
        return self.n_content + 2

    @property
    def mask(self) -> int:
        return self.n_content + 3

    @property
    def vocab_size(self) -> int:
        """Ids in use, rounded up to a multiple of 8 (LLaDA pads its vocabulary the same way)."""
        return -(-(self.mask + 1 + self.n_extra_specials) // 8) * 8

    def special_names(self) -> dict[int, str]:
        return {self.bos: "<s>", self.query: "?", self.eos: "</s>", self.mask: "_"}


class SymbolTokenizer:
    """Tokenizer for a :class:`SymbolVocabulary` task: ``encode(text)`` (the task's prompt syntax) returns one
    prompt row; decoding renders symbols with ``task.render``, dropping specials unless asked."""

    def __init__(self, task) -> None:
        self.task = task
        self.mask_token_id, self.eos_token_id, self.bos_token_id = task.mask, task.eos, task.bos

    def encode(self, text: str) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, texts, return_tensors: str = "pt", **_: object) -> dict[str, torch.Tensor]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = torch.cat([self.encode(t) for t in texts], dim=0)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        tokens = [int(t) for t in ids]
        if skip_special_tokens:
            tokens = [t for t in tokens if t < self.task.n_content]
        return self.task.render(torch.tensor(tokens, dtype=torch.long))

    def batch_decode(self, rows, skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(row, skip_special_tokens) for row in rows]
