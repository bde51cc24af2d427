"""Pipeline objects for the LLaDA and Dream families: ``pipe(prompt or input_ids, gen_length=..., steps=...)``.

A pipeline owns a model, an optional tokenizer and the shared sampler core. Acceleration strategies
attach to it through ``diffaccel.wrap(pipe, ...)``: KV caches and sparse attention as hooks on the
model, self-speculative decoding as the pipeline's block policy (:attr:`block_policy`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import torch

from .sampler import BlockPolicy, DecodeRecord, MaskedDiffusionSampler, SamplingConfig

logger = logging.getLogger(__name__)


@dataclass
class DiffusionLMPipelineOutput:
    """``sequences`` ``[B, P+G]`` (prompt and answer), ``generated`` ``[B, G]``, ``texts`` if a tokenizer
    is present, and the counters of the run (``record``)."""

    sequences: torch.Tensor
    generated: torch.Tensor
    texts: list[str] | None
    record: DecodeRecord


_SAMPLING_FIELDS = {f.name for f in fields(SamplingConfig)}


class DiffusionLMPipeline:
    """Shared pipeline logic; subclasses fix the family and its defaults."""

    family: str = ""
    default_sampling = SamplingConfig()

    def __init__(self, model: torch.nn.Module, tokenizer=None, *, mask_id: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        config = getattr(model, "config", None)
        self.mask_id = mask_id if mask_id is not None else getattr(config, "mask_token_id", None)
        if self.mask_id is None:
            raise ValueError("pass mask_id=... (the model config has no mask_token_id)")
        self.sampler = MaskedDiffusionSampler(
            model,
            family=self.family,
            mask_id=self.mask_id,
            eos_id=getattr(config, "eos_token_id", None),
            eot_id=getattr(config, "eot_token_id", None),
        )
        self.block_policy: BlockPolicy | None = None  # None = stepwise reference decoding
        self.sampling_overrides: dict = {}  # set by strategies that change the schedule (Fast-dLLM threshold)
        self.last_sequence_length: int | None = None

    @property
    def components(self) -> dict[str, object]:
        return {"model": self.model, "tokenizer": self.tokenizer}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def last_record(self) -> DecodeRecord | None:
        return self.sampler.last_record

    def max_length(self) -> int | None:
        """Longest sequence (prompt + answer) the model's positions cover, from its config."""
        config = getattr(self.model, "config", None)
        for name in ("max_sequence_length", "max_position_embeddings"):
            value = getattr(config, name, None)
            if isinstance(value, int):
                return value
        return None

    def _check_length(self, ids: torch.Tensor, gen_length: int) -> None:
        if ids.shape[0] == 0 or ids.shape[1] == 0:
            raise ValueError(
                f"empty prompt (input ids of shape {tuple(ids.shape)}): give at least one non-empty prompt"
            )
        limit = self.max_length()
        if limit is not None and ids.shape[1] + gen_length > limit:
            raise ValueError(
                f"prompt of {ids.shape[1]} tokens plus gen_length {gen_length} exceeds the model's maximum "
                f"length of {limit} tokens; shorten the prompt or lower gen_length"
            )

    def _encode(self, prompt) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not isinstance(prompt, (str, torch.Tensor)) and len(prompt) == 0:
            raise ValueError("empty prompt list: give at least one prompt")
        if isinstance(prompt, torch.Tensor):
            ids = prompt[None] if prompt.dim() == 1 else prompt
            return ids.to(self.device), None
        if self.tokenizer is None:
            raise ValueError("text prompts need a tokenizer; pass input_ids (a [B, P] LongTensor) instead")
        encoded = self.tokenizer(
            [prompt] if isinstance(prompt, str) else list(prompt), return_tensors="pt", padding=True
        )
        mask = encoded.get("attention_mask")
        mask = None if mask is None or bool(mask.all()) else mask.to(self.device)
        return encoded["input_ids"].to(self.device), mask

    def sampling_config(self, **options) -> SamplingConfig:
        unknown = set(options) - _SAMPLING_FIELDS
        if unknown:
            raise TypeError(f"unknown sampling option(s) {sorted(unknown)}; valid: {sorted(_SAMPLING_FIELDS)}")
        values = {f: getattr(self.default_sampling, f) for f in _SAMPLING_FIELDS}
        values.update(self.sampling_overrides)
        values.update(options)
        if "threshold" in options and options["threshold"] is not None and "schedule" not in options:
            values["schedule"] = "threshold"
        return SamplingConfig(**values)

    def __call__(self, prompt=None, *, input_ids=None, attention_mask=None, generator=None, **sampling_options):
        if (prompt is None) == (input_ids is None):
            raise ValueError("pass exactly one of prompt (text or ids) and input_ids")
        # one call = one run: reset stateful hooks (engine clock, caches) as diffusers pipelines do
        registry = getattr(self.model, "_diffusers_hook", None)
        if registry is not None:
            registry.reset_stateful_hooks()
        ids, mask = self._encode(input_ids if input_ids is not None else prompt)
        mask = attention_mask if attention_mask is not None else mask
        config = self.sampling_config(**sampling_options)
        self._check_length(ids, config.gen_length)
        sequences = self.sampler.generate(
            ids, config, attention_mask=mask, generator=generator, policy=self.block_policy
        )
        self.last_sequence_length = sequences.shape[1]
        generated = sequences[:, ids.shape[1] :]
        texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True) if self.tokenizer else None
        return DiffusionLMPipelineOutput(
            sequences=sequences, generated=generated, texts=texts, record=self.sampler.last_record
        )


class LLaDAPipeline(DiffusionLMPipeline):
    """LLaDA sampler (ML-GSAI/LLaDA `generate.py`). Defaults: the repository demo (128 tokens, 128 steps, block 32)."""

    family = "llada"
    default_sampling = SamplingConfig(gen_length=128, steps=128, block_length=32)


class DreamPipeline(DiffusionLMPipeline):
    """Dream sampler (Dream's `generation_utils.py`), native timestep schedule by default; ``schedule="linear"`` with
    ``block_length`` is our one-token-per-step, semi-autoregressive option."""

    family = "dream"
    default_sampling = SamplingConfig(
        gen_length=128, steps=128, block_length=128, alg="maskgit_plus", schedule="dream_native"
    )

    def sampling_config(self, **options) -> SamplingConfig:
        if "block_length" not in options and "gen_length" in options:
            options["block_length"] = options["gen_length"]
        return super().sampling_config(**options)
