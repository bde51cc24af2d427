"""One masked-diffusion sampler core with pluggable pieces (ours; docs/methods.md).

The reference samplers of LLaDA (`generate.py`) and Dream (`generation_utils.py`) and every accelerated variant run
through :class:`MaskedDiffusionSampler`. What varies is plugged in, never forked:

* the **schedule** (``SamplingConfig.schedule``): LLaDA's per-block linear counts, Dream's native
  timestep counts, or Fast-dLLM's confidence threshold;
* the **token/confidence rule**: LLaDA remasking (``low_confidence``/``random``/``random_order``,
  Gumbel sampling) or Dream's ``sample_tokens`` orders;
* the **forward**: ``model(x, attention_mask=..., decode_step=step)``; KV caches and sparse attention
  act as hooks on the model and read the :class:`DecodeStep` to know where the sampler is;
* the **block policy**: stepwise commits (default) or self-speculative decoding
  (:class:`diffaccel.dllm.ssd.SelfSpeculativeDecoding`), which calls back into the same
  :meth:`MaskedDiffusionSampler.propose` and :func:`~diffaccel.dllm.commit.top_confidence_positions`.

Confidences and ties follow ``SamplingConfig.numerics`` (:mod:`diffaccel.dllm.numerics`): by default
exactly as the official samplers compute them (softmax in the logits' dtype, ``torch.topk`` on the
tensor the official code passes), so stepwise decoding is token-identical to the published
``generate``; ``numerics="stable"`` is our deterministic alternative (float64, lowest position on ties).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch

from .commit import commit, top_confidence_positions
from .confidence import DREAM_ALGS, LLADA_REMASKING, dream_propose, dream_sample_tokens, llada_propose, shift_logits
from .numerics import NUMERICS, SELECTION_WINDOWS, select_threshold, select_top, window_bounds
from .schedules import (
    dream_timesteps,
    dream_transfer_count,
    dream_transfer_probability,
    get_num_transfer_tokens,
)

logger = logging.getLogger(__name__)

SCHEDULES = ("linear", "dream_native", "threshold")
_run_ids = itertools.count(1)


@dataclass(frozen=True)
class DecodeStep:
    """Where the sampler is when it calls the model; passed as ``decode_step=`` to the forward.

    Hooks use it to decide what to compute (dKV-Cache refresh, SparseD's dense/sparse switch).
    ``index`` counts forwards of the reference schedule within the run (SparseD's ``now``);
    ``planned_commit`` is set when the positions to commit are known before the forward
    (``random_order`` remasking), which dKV-Cache-Greedy requires; ``purpose`` is ``"step"`` for an
    ordinary denoising step and ``"verify"`` for a self-speculative verification batch.
    ``reads_block``: the caller reads the outputs of every position of the current block, decoded ones
    included (``LLaDA2Pipeline`` may re-edit decoded tokens), so caches must compute all of them.
    ``cache_rows``: for a verification batch, the row of the run's batch each sequence continues
    (a block-level cache serves every node of a row from that row's keys/values and stores nothing).
    """

    run_id: int
    index: int
    total_steps: int
    block_index: int
    step_in_block: int
    block_start: int
    block_end: int
    prompt_length: int
    gen_length: int
    mask_id: int
    shifted_logits: bool = False
    planned_commit: torch.Tensor | None = None
    purpose: str = "step"
    cfg: bool = False
    reads_block: bool = False
    cache_rows: tuple[int, ...] | None = None


@dataclass
class DecodeRecord:
    """Counters of one ``generate`` call (the numbers every run reports)."""

    forward_calls: int = 0  # NFE: model calls (a CFG pair in one batch counts once)
    forward_rows: int = 0  # sequences pushed through the model (an SSD verification batch counts N+1)
    query_tokens: int = 0  # (row, position) tokens the transformer actually computed
    steps: int = 0  # denoising steps (commit rounds)
    committed_tokens: int = 0
    accepted_per_round: list[int] = field(default_factory=list)  # SSD: tokens committed per round

    def as_dict(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "accepted_per_round"}
        if self.accepted_per_round:
            out["rounds"] = len(self.accepted_per_round)
            out["mean_tokens_per_round"] = sum(self.accepted_per_round) / len(self.accepted_per_round)
        return out


@dataclass(frozen=True)
class SamplingConfig:
    """Everything that decides the output of a generation, validated up front.

    ``steps`` is the total over all blocks (LLaDA convention); ``threshold`` switches to Fast-dLLM
    parallel decoding (``schedule="threshold"``), where ``steps`` is only an upper bound.

    ``numerics`` (``"official"``, ``"fast-dllm"``, ``"stable"``) picks the confidence dtype and the tie
    rule (:mod:`diffaccel.dllm.numerics`). Two settings reproduce Fast-dLLM v1's cached loops: after a
    block's first forward ``torch.topk`` sees only the positions its cache runs
    (``selection_window``: ``"sequence"``, ``"from-block"`` for the prefix cache, ``"block"`` for the
    dual cache), and ``min_block_forwards=2`` runs the second forward of a block even when the first one
    completed it (its loop always runs once after the block-start forward).
    """

    gen_length: int = 128
    steps: int = 128
    block_length: int = 128
    temperature: float = 0.0
    remasking: str = "low_confidence"  # LLaDA family
    alg: str = "maskgit_plus"  # Dream family
    alg_temp: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    cfg_scale: float = 0.0
    logits_eos_inf: bool = False
    confidence_eos_eot_inf: bool = False
    schedule: str = "linear"
    threshold: float | None = None
    eps: float = 1e-3
    numerics: str = "official"
    selection_window: str = "sequence"
    min_block_forwards: int = 1

    def validate(self, family: str) -> SamplingConfig:
        for name in ("gen_length", "steps", "block_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.gen_length % self.block_length:
            raise ValueError(f"gen_length={self.gen_length} must be a multiple of block_length={self.block_length}")
        num_blocks = self.gen_length // self.block_length
        if self.schedule == "linear" and self.steps % num_blocks:
            raise ValueError(f"steps={self.steps} must be a multiple of the number of blocks ({num_blocks})")
        if self.schedule == "threshold" and self.threshold is None:
            raise ValueError("schedule='threshold' needs a threshold (Fast-dLLM uses 0.9)")
        if self.schedule == "dream_native" and num_blocks != 1:
            raise ValueError(
                "Dream's native schedule has no blocks; use block_length == gen_length or schedule='linear'"
            )
        if family == "llada" and self.remasking not in LLADA_REMASKING:
            raise ValueError(f"remasking must be one of {LLADA_REMASKING}, got {self.remasking!r}")
        if family == "dream":
            if self.alg not in DREAM_ALGS:
                raise ValueError(f"alg must be one of {DREAM_ALGS}, got {self.alg!r}")
            if self.cfg_scale:
                raise ValueError("classifier-free guidance is a LLaDA sampler option; Dream's sampler has none")
            if self.alg == "origin" and self.schedule != "dream_native":
                raise ValueError("alg='origin' (random D3PM order) only exists with schedule='dream_native'")
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0, got {self.cfg_scale}")
        if self.numerics not in NUMERICS:
            raise ValueError(f"numerics must be one of {NUMERICS}, got {self.numerics!r}")
        if self.selection_window not in SELECTION_WINDOWS:
            raise ValueError(f"selection_window must be one of {SELECTION_WINDOWS}, got {self.selection_window!r}")
        if self.min_block_forwards not in (1, 2):
            raise ValueError(f"min_block_forwards must be 1 or 2, got {self.min_block_forwards!r}")
        return self

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.num_blocks


@dataclass
class Block:
    index: int
    start: int
    end: int
    steps: int  # fixed schedules: exact count; threshold: upper bound


@dataclass
class DecodeRun:
    """Mutable state of one ``generate`` call, shared by the core and its block policy."""

    x: torch.Tensor
    attention_mask: torch.Tensor | None
    config: SamplingConfig
    prompt_length: int
    prompt_positions: torch.Tensor
    generator: torch.Generator | None
    record: DecodeRecord
    run_id: int
    step_index: int = 0

    def make_step(self, sampler: MaskedDiffusionSampler, block: Block, step_in_block: int, **extra) -> DecodeStep:
        return DecodeStep(
            run_id=self.run_id,
            index=self.step_index,
            total_steps=self.config.steps,
            block_index=block.index,
            step_in_block=step_in_block,
            block_start=block.start,
            block_end=block.end,
            prompt_length=self.prompt_length,
            gen_length=self.config.gen_length,
            mask_id=sampler.mask_id,
            shifted_logits=sampler.shifted_logits,
            cfg=self.config.cfg_scale > 0,
            **extra,
        )


class BlockPolicy(Protocol):
    """Decodes one semi-autoregressive block in place on ``run.x``."""

    def decode_block(self, sampler: MaskedDiffusionSampler, run: DecodeRun, block: Block) -> None: ...


class StepwiseDecoding:
    """The reference policy: forward, propose, count, commit; once per step (LLaDA, Dream, Fast-dLLM)."""

    def decode_block(self, sampler: MaskedDiffusionSampler, run: DecodeRun, block: Block) -> None:
        cfg = run.config
        positions = torch.arange(run.x.shape[1], device=run.x.device)
        in_block = (positions < block.end)[None, :]
        counts = None
        if cfg.schedule == "linear":
            counts = get_num_transfer_tokens(run.x[:, block.start : block.end] == sampler.mask_id, block.steps)
        timesteps = (
            dream_timesteps(block.steps, cfg.eps, device=run.x.device) if cfg.schedule == "dream_native" else None
        )
        order_scores = None
        if sampler.family == "llada" and cfg.remasking == "random_order":
            order_scores = torch.rand(run.x.shape, dtype=torch.float64, device=run.x.device, generator=run.generator)
        max_steps = block.steps if cfg.schedule != "threshold" else block.end - block.start
        columns = sampler.window_for(run, block)  # constant over the block's steps (see window_for)
        for i in range(max(max_steps, cfg.min_block_forwards)):
            masked = run.x == sampler.mask_id
            candidates = masked & in_block
            if not candidates.any() and (cfg.schedule == "threshold" or i >= max_steps) and i >= cfg.min_block_forwards:
                break
            idle = not candidates.any()  # a forward the official loop runs after the block is done
            planned = None
            if order_scores is not None and not idle:
                planned = top_confidence_positions(torch.where(candidates, order_scores, float("-inf")), counts[:, i])
            step = run.make_step(sampler, block, i, planned_commit=planned)
            logits = sampler.forward_logits(run, run.x, step, columns=columns)
            if cfg.schedule == "dream_native" and cfg.alg == "origin":
                transfer, x0 = sampler.origin_transfer(logits, masked, i, block.steps, timesteps, run)
            else:
                x0, confidence = sampler.propose(logits, masked, run, order_scores, columns=columns)
                if sampler.family == "llada":  # decoded positions propose themselves, as in the original
                    x0 = torch.where(masked, x0, run.x)
                confidence = torch.where(candidates, confidence, float("-inf"))
                bounds = sampler.selection_bounds(run, block, i)
                if idle:  # min_block_forwards: nothing left to commit
                    transfer = torch.zeros_like(candidates)
                elif cfg.schedule == "threshold":
                    transfer = select_threshold(confidence, candidates, cfg.threshold, cfg.numerics, bounds=bounds)
                else:
                    if cfg.schedule == "linear":
                        k = counts[:, i]
                    else:
                        num_mask = masked.sum() / masked.shape[0]
                        k = torch.full(
                            (run.x.shape[0],),
                            dream_transfer_count(num_mask, i, block.steps, timesteps),
                            device=run.x.device,
                        )
                    transfer = sampler.select(confidence, k, run, bounds)
            run.x = commit(run.x, x0, transfer)
            run.record.steps += 0 if idle else 1
            run.record.committed_tokens += int(transfer.sum())
            run.step_index += 1


class MaskedDiffusionSampler:
    """The shared sampler core for one model.

    ``family`` is ``"llada"`` (logit i predicts token i) or ``"dream"`` (raw logit i predicts token
    i+1; re-aligned with :func:`~diffaccel.dllm.confidence.shift_logits`).
    """

    def __init__(
        self, model: torch.nn.Module, *, family: str, mask_id: int, eos_id: int | None = None, eot_id: int | None = None
    ) -> None:
        if family not in ("llada", "dream"):
            raise ValueError(f"family must be 'llada' or 'dream', got {family!r}")
        self.model = model
        self.family = family
        self.mask_id = mask_id
        self.eos_id = eos_id
        self.eot_id = eot_id
        self.last_record: DecodeRecord | None = None
        #: [ours] ask the model for the logits of the current block's columns only where the proposal rule
        #: is per position (:meth:`window_for`); off by default, as the official samplers compute every
        #: position; the K/V caches and SSD turn it on
        self.logits_window = False

    @property
    def shifted_logits(self) -> bool:
        return self.family == "dream"

    # -- pluggable pieces -------------------------------------------------------------------------
    def window_for(self, run: DecodeRun, block: Block, to_end: bool = False) -> tuple[int, int] | None:
        """[ours] The columns ``(lo, hi)`` whose logits a step of ``block`` reads, or ``None`` for all.

        With :attr:`logits_window` on and a proposal that is computed position by position without random
        draws (greedy LLaDA ``low_confidence``, greedy Dream with a confidence order), a step reads only
        the still-masked columns before ``block.end``: ``[block.start, block.end)``, from further left when
        an earlier block committed the mask token itself (a model may predict it; it stays masked); masked
        columns only shrink, so the window of a block's first step serves all of them. ``to_end`` extends
        the window to the end of the sequence (SSD carries a block's last logits into the next block). The
        tokens are those of the full forward: the model computes the same per-position operations on
        fewer rows."""
        cfg = run.config
        if not self.logits_window or cfg.temperature != 0:
            return None
        if (self.family == "llada" and cfg.remasking != "low_confidence") or (
            self.family == "dream" and cfg.alg == "origin"
        ):
            return None
        masked_columns = (run.x[:, : block.start] == self.mask_id).any(dim=0).nonzero()
        lo = int(masked_columns[0]) if masked_columns.numel() else block.start
        return lo, run.x.shape[1] if to_end else block.end

    def forward_logits(
        self,
        run: DecodeRun,
        x: torch.Tensor,
        step: DecodeStep,
        attention_mask: torch.Tensor | None = None,
        columns: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Aligned logits ``[B, L, V]`` for ``x`` (CFG combined, Dream shift applied); counts NFE.

        ``columns=(lo, hi)`` (from :meth:`window_for`): logits ``[B, hi - lo, V]`` of those columns only;
        for Dream the model is asked for the outputs one to the left, which predict them."""
        attention_mask = run.attention_mask if attention_mask is None else attention_mask
        window = {}
        if columns is not None:
            lo, hi = columns
            if self.shifted_logits:  # column c is predicted by output c - 1 (column 0 by output 0)
                lo, hi = max(lo - 1, 0), max(hi - 1, 1)
            window["logits_range"] = (lo, hi)
            lo, hi = columns
        cfg_scale = run.config.cfg_scale
        if cfg_scale > 0:
            un_x = x.clone()
            un_x[:, run.prompt_positions] = self.mask_id
            both = torch.cat([x, un_x], dim=0)
            mask2 = None if attention_mask is None else torch.cat([attention_mask, attention_mask], dim=0)
            out = self.model(both, attention_mask=mask2, decode_step=step, **window)
            cond, uncond = torch.chunk(out.logits, 2, dim=0)
            logits = uncond + (cfg_scale + 1) * (cond - uncond)
            rows = both.shape[0]
        else:
            out = self.model(x, attention_mask=attention_mask, decode_step=step, **window)
            logits, rows = out.logits, x.shape[0]
        run.record.forward_calls += 1
        run.record.forward_rows += rows
        run.record.query_tokens += out.computed_tokens if out.computed_tokens is not None else rows * x.shape[1]
        if not self.shifted_logits:
            return logits
        if columns is None:
            return shift_logits(logits)
        return torch.cat([logits[:, :1], logits[:, : hi - 1]], dim=1) if lo == 0 else logits

    def propose(
        self,
        logits: torch.Tensor,
        masked: torch.Tensor,
        run: DecodeRun,
        order_scores: torch.Tensor | None = None,
        columns: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate token and confidence per position (``[B, L]`` each).

        ``columns=(lo, hi)``: ``logits`` cover those columns only (:meth:`window_for`); the other columns
        get the mask id and ``-inf``, as decoded positions do.

        Every caller reads the proposal at masked positions only (a decoded position keeps its token and
        gets confidence ``-inf``). So where nothing is random (LLaDA, temperature 0, ``low_confidence``)
        the argmax and softmax run on the columns from the first to the last masked one, not over the
        prompt too: per position they are the same operations, so the tokens are those of the official
        ``generate()``, which computes them over the whole sequence; the other columns get the mask id and
        ``-inf``. [ours: on a 515-token prompt with a 32-token answer this was a third of a cached step.]"""
        cfg = run.config
        if columns is not None:
            lo, hi = columns
            x0_window, confidence_window = self.propose(logits, masked[:, lo:hi], run)
            return self._embed(x0_window, confidence_window, masked.shape, lo, hi)
        if self.family == "llada" and cfg.temperature == 0 and cfg.remasking == "low_confidence":
            columns = masked.any(dim=0).nonzero()
            if columns.numel() and (columns[0] > 0 or columns[-1] < masked.shape[1] - 1):
                lo, hi = int(columns[0]), int(columns[-1]) + 1
                x0_window, confidence_window = self._llada_propose(logits[:, lo:hi], cfg, order_scores)
                return self._embed(x0_window, confidence_window, masked.shape, lo, hi)
        if self.family == "llada":
            return self._llada_propose(logits, cfg, order_scores, run.generator)
        return dream_propose(
            logits,
            masked,
            self.mask_id,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            alg=cfg.alg,
            generator=run.generator,
            numerics=cfg.numerics,
        )

    def _embed(self, x0_window, confidence_window, shape, lo, hi):
        """Full-width proposals from those of columns ``lo .. hi-1`` (mask id and ``-inf`` elsewhere)."""
        x0 = torch.full(shape, self.mask_id, dtype=x0_window.dtype, device=x0_window.device)
        confidence = torch.full(shape, float("-inf"), dtype=confidence_window.dtype, device=x0_window.device)
        x0[:, lo:hi], confidence[:, lo:hi] = x0_window, confidence_window
        return x0, confidence

    def _llada_propose(self, logits, cfg, order_scores, generator=None):
        return llada_propose(
            logits,
            temperature=cfg.temperature,
            remasking=cfg.remasking,
            generator=generator,
            eos_id=self.eos_id,
            eot_id=self.eot_id,
            logits_eos_inf=cfg.logits_eos_inf,
            confidence_eos_eot_inf=cfg.confidence_eos_eot_inf,
            order_scores=order_scores,
            numerics=cfg.numerics,
        )

    @staticmethod
    def selection_bounds(run: DecodeRun, block: Block, step_in_block: int) -> tuple[int, int] | None:
        """Columns the official ``torch.topk`` sees at this step (Fast-dLLM's caches: the positions run)."""
        window = run.config.selection_window
        if window == "sequence" or step_in_block == 0:
            return None
        return window_bounds(window, run.x.shape[1], block.start, block.end)

    def select(
        self, confidence: torch.Tensor, counts: torch.Tensor, run: DecodeRun, bounds: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Which positions to commit: top-``counts`` by confidence under the run's numerics (Dream
        ``alg_temp`` samples them, in one batched ``torch.multinomial`` call as Dream does)."""
        alg_temp = run.config.alg_temp
        if self.family == "dream" and alg_temp:
            transfer = torch.zeros_like(confidence, dtype=torch.bool)
            ks = [int(k) for k in counts]
            if run.config.numerics != "stable" and len(set(ks)) == 1:
                if ks[0] > 0:
                    probs = torch.softmax(confidence / alg_temp, dim=-1)
                    transfer.scatter_(1, torch.multinomial(probs, ks[0], generator=run.generator), True)
                return transfer
            for row, k in enumerate(ks):
                if k > 0:
                    probs = torch.softmax(confidence[row] / alg_temp, dim=-1)
                    transfer[row, torch.multinomial(probs, k, generator=run.generator)] = True
            return transfer
        return select_top(confidence, counts, run.config.numerics, family=self.family, bounds=bounds)

    def origin_transfer(self, logits, masked, i, steps, timesteps, run):
        """Dream ``origin``: each masked position unmasks with probability ``1 - s/t`` (Dream's ``_sample``)."""
        cfg = run.config
        p_transfer = dream_transfer_probability(i, steps, timesteps)
        n_masked = int(masked.sum())
        chosen = torch.rand(n_masked, device=logits.device, generator=run.generator) < p_transfer
        _, x0_chosen = dream_sample_tokens(
            logits[masked][chosen],
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            alg="origin",
            generator=run.generator,
        )
        transfer = torch.zeros_like(masked)
        transfer[masked] = chosen
        x0 = torch.full_like(run.x, self.mask_id)
        flat = x0[masked]
        flat[chosen] = x0_chosen
        x0[masked] = flat
        return transfer, x0

    # -- the loop -----------------------------------------------------------------------------------
    def blocks(self, prompt_length: int, config: SamplingConfig) -> list[Block]:
        steps = config.steps_per_block if config.schedule != "dream_native" else config.steps
        return [
            Block(b, prompt_length + b * config.block_length, prompt_length + (b + 1) * config.block_length, steps)
            for b in range(config.num_blocks)
        ]

    @torch.no_grad()
    def generate(
        self,
        prompt: torch.Tensor,
        config: SamplingConfig,
        *,
        attention_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        policy: BlockPolicy | None = None,
    ) -> torch.Tensor:
        """Return ``[B, P + gen_length]`` tokens; counters in :attr:`last_record`."""
        config = config.validate(self.family)
        if prompt.dim() != 2 or prompt.dtype not in (torch.long, torch.int64, torch.int32):
            raise ValueError(f"prompt must be a [B, P] integer tensor, got {tuple(prompt.shape)} {prompt.dtype}")
        if (prompt == self.mask_id).any():
            raise ValueError(f"the prompt contains the mask token id {self.mask_id}")
        batch, prompt_length = prompt.shape
        x = torch.full((batch, prompt_length + config.gen_length), self.mask_id, dtype=torch.long, device=prompt.device)
        x[:, :prompt_length] = prompt
        if attention_mask is not None:
            attention_mask = torch.cat(
                [
                    attention_mask,
                    torch.ones(batch, config.gen_length, dtype=attention_mask.dtype, device=attention_mask.device),
                ],
                dim=1,
            )
        run = DecodeRun(
            x=x,
            attention_mask=attention_mask,
            config=config,
            prompt_length=prompt_length,
            prompt_positions=torch.arange(prompt_length, device=prompt.device),
            generator=generator,
            record=DecodeRecord(),
            run_id=next(_run_ids),
        )
        self.last_record = run.record
        policy = policy or StepwiseDecoding()
        for block in self.blocks(prompt_length, config):
            policy.decode_block(self, run, block)
        return run.x


def llada_generate(
    model,
    prompt,
    *,
    steps=128,
    gen_length=128,
    block_length=128,
    temperature=0.0,
    cfg_scale=0.0,
    remasking="low_confidence",
    mask_id=126336,
    attention_mask=None,
    logits_eos_inf=False,
    confidence_eos_eot_inf=False,
    eos_id=None,
    eot_id=None,
    generator=None,
    threshold=None,
    policy=None,
):
    """LLaDA's reference ``generate`` (ML-GSAI/LLaDA `generate.py`) on the shared core; arguments as the original.

    ``threshold`` (not in the original) switches to Fast-dLLM parallel decoding.
    """
    config = getattr(model, "config", None)
    eos_id = eos_id if eos_id is not None else getattr(config, "eos_token_id", None)
    eot_id = eot_id if eot_id is not None else getattr(config, "eot_token_id", None)
    sampler = MaskedDiffusionSampler(model, family="llada", mask_id=mask_id, eos_id=eos_id, eot_id=eot_id)
    sampling = SamplingConfig(
        gen_length=gen_length,
        steps=steps,
        block_length=block_length,
        temperature=temperature,
        remasking=remasking,
        cfg_scale=cfg_scale,
        logits_eos_inf=logits_eos_inf,
        confidence_eos_eot_inf=confidence_eos_eot_inf,
        schedule="threshold" if threshold is not None else "linear",
        threshold=threshold,
    )
    return sampler.generate(prompt, sampling, attention_mask=attention_mask, generator=generator, policy=policy)


def dream_generate(
    model,
    input_ids,
    *,
    max_new_tokens=512,
    steps=512,
    temperature=0.0,
    top_p=None,
    top_k=None,
    alg="origin",
    alg_temp=None,
    eps=1e-3,
    mask_id=151666,
    attention_mask=None,
    generator=None,
    block_length=None,
    schedule="dream_native",
    policy=None,
):
    """Dream's ``diffusion_generate`` / ``_sample`` (Dream's `generation_utils.py`) on the shared core.

    ``schedule="linear"`` with ``block_length`` is our option (one token per step, semi-AR blocks).
    """
    sampler = MaskedDiffusionSampler(model, family="dream", mask_id=mask_id)
    sampling = SamplingConfig(
        gen_length=max_new_tokens,
        steps=steps,
        block_length=block_length or max_new_tokens,
        temperature=temperature,
        alg=alg,
        alg_temp=alg_temp,
        top_p=top_p,
        top_k=top_k,
        eps=eps,
        schedule=schedule,
    )
    return sampler.generate(input_ids, sampling, attention_mask=attention_mask, generator=generator, policy=policy)


def with_overrides(config: SamplingConfig, **overrides) -> SamplingConfig:
    return replace(config, **overrides)
