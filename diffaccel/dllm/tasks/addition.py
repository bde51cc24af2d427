"""Fixed-width addition as a masked-diffusion task (ours; docs/methods.md).

Vocabulary (16 ids): digits 0-9, ``+`` = 10, ``=`` = 11, BOS = 12, EOS = 13, MASK = 14, 15 unused.
Prompt: ``BOS a_1..a_n + b_1..b_n =`` with zero-padded n-digit operands (fixed length, so no padding
masks are needed). Answer: the zero-padded (n+1)-digit sum followed by EOS up to ``gen_length`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import FixedLengthTask

PLUS, EQUALS, BOS, EOS, MASK = 10, 11, 12, 13, 14
VOCAB_SIZE = 16
_SYMBOLS = {PLUS: "+", EQUALS: "=", BOS: "<s>", EOS: "</s>", MASK: "_"}


@dataclass(frozen=True)
class AdditionTask(FixedLengthTask):
    """``n_digits``-digit operands, answers padded with EOS to ``gen_length`` tokens."""

    n_digits: int = 4
    gen_length: int = 8

    def __post_init__(self) -> None:
        if self.n_digits < 1:
            raise ValueError("n_digits must be >= 1")
        if self.gen_length < self.n_digits + 1:
            raise ValueError(f"gen_length={self.gen_length} cannot hold an {self.n_digits + 1}-digit sum")

    @property
    def prompt_length(self) -> int:
        return 2 * self.n_digits + 3

    def sample_operands(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        high = 10**self.n_digits
        a = torch.randint(0, high, (count,), generator=generator)
        b = torch.randint(0, high, (count,), generator=generator)
        return a, b

    def _digits(self, values: torch.Tensor, width: int) -> torch.Tensor:
        powers = 10 ** torch.arange(width - 1, -1, -1)
        return (values[:, None] // powers) % 10

    def encode_prompts(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        count = a.shape[0]
        col = lambda token: torch.full((count, 1), token, dtype=torch.long)  # noqa: E731
        return torch.cat(
            [col(BOS), self._digits(a, self.n_digits), col(PLUS), self._digits(b, self.n_digits), col(EQUALS)], dim=1
        )

    def encode_answers(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        digits = self._digits(a + b, self.n_digits + 1)
        pad = torch.full((a.shape[0], self.gen_length - self.n_digits - 1), EOS, dtype=torch.long)
        return torch.cat([digits, pad], dim=1)

    def batch(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(prompts [count, P], answers [count, G])`` of fresh random sums."""
        a, b = self.sample_operands(count, generator)
        return self.encode_prompts(a, b), self.encode_answers(a, b)


def render(tokens: torch.Tensor) -> str:
    """Human-readable form of one token row, e.g. ``<s>0123+0456=00579</s></s></s>``."""
    return "".join(_SYMBOLS.get(int(t), str(int(t))) for t in tokens)


def parse_prompt(text: str, n_digits: int) -> torch.Tensor:
    """Tokenise ``"1234+5678"`` (or ``"1234+5678="``) into a ``[1, P]`` prompt."""
    body = text.strip().rstrip("=")
    try:
        left, right = body.split("+")
        a, b = int(left), int(right)
    except ValueError as exc:
        raise ValueError(f"expected a prompt like '1234+5678', got {text!r}") from exc
    if not (0 <= a < 10**n_digits and 0 <= b < 10**n_digits):
        raise ValueError(f"operands of {text!r} must be non-negative with at most {n_digits} digits")
    return AdditionTask(n_digits=n_digits, gen_length=n_digits + 1).encode_prompts(torch.tensor([a]), torch.tensor([b]))


class AdditionTokenizer:
    """Minimal tokenizer for the addition task so the pipeline accepts text prompts like ``"1234+5678"``."""

    def __init__(self, n_digits: int) -> None:
        self.n_digits = n_digits
        self.mask_token_id, self.eos_token_id, self.bos_token_id = MASK, EOS, BOS

    def __call__(self, texts, return_tensors: str = "pt", **_: object) -> dict[str, torch.Tensor]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = torch.cat([parse_prompt(t, self.n_digits) for t in texts], dim=0)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        out = []
        for token in (int(t) for t in ids):
            if skip_special_tokens and token in (BOS, EOS, MASK):
                continue
            out.append(_SYMBOLS.get(token, str(token)))
        return "".join(out)

    def batch_decode(self, rows, skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(row, skip_special_tokens) for row in rows]
