"""The dLLM strategies as engine strategies: ``diffaccel.wrap(pipe, "dkv-cache", refresh_interval=4)``.

Each is a :class:`diffaccel.strategies.base.Strategy` with ``unit_level = "custom"``: the engine
attaches its own hook (step clock, run resets, statistics; dLLM strategies opt out of its fixed-shape
check, see :attr:`DLLMStrategy.variable_input_shapes`) to the pipeline's model, then
calls :meth:`attach`, where the strategy registers its hooks through ``diffusers.hooks.HookRegistry``
(KV caches and SparseD) or installs its block policy on the pipeline (SSD); ``unwrap`` calls
:meth:`detach`. :meth:`report` fills ``diffaccel.summary``: ``steps`` are commit rounds,
``full_steps`` forwards over every token, ``computed_fraction`` the share of (row, position) tokens
the transformer computed, plus forwards (NFE), rows, tokens and method-specific figures.

Runs: a diffaccel dLLM pipeline has no scheduler, so each call resets the model's stateful hooks first
(the engine's run-boundary rule), and every call is one run of the engine's clock; in diffusers'
``LLaDA2Pipeline`` the scheduler's ``set_timesteps`` starts the run, as in every wrapped pipeline.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..core.errors import UnsupportedFamilyError
from ..strategies.base import Strategy
from ..strategies.registry import register_strategy
from .dkv_cache import GREEDY_NOT_FOR_DREAM, DKVCacheConfig
from .dkv_cache import make_planner as make_dkv_planner
from .fast_dllm import FastDLLMConfig
from .fast_dllm import make_planner as make_fast_planner
from .kv_cache import attach_planner, detach_planner
from .llada2 import attach_step_hook, detach_step_hook, is_llada2_pipeline
from .sparsed import SparseDConfig, attach_sparsed, detach_sparsed
from .ssd import BLOCK_CACHE_NOT_FOR_DREAM, SelfSpeculativeDecoding, SSDConfig


def _is_dllm_pipeline(owner) -> bool:
    """A diffaccel LLaDA / Dream pipeline: its decoding loop takes a block policy and schedule overrides."""
    return hasattr(owner, "block_policy") and hasattr(owner, "sampler")


def set_logits_window(pipeline, on: bool) -> None:
    """Turn the sampler's block-column logits on or off (:meth:`MaskedDiffusionSampler.window_for`): a
    cached step and SSD's forwards read only the current block's masked columns, the official full-cost
    loop every column. Nothing to do on ``LLaDA2Pipeline`` (its step hook asks for the last block) or a
    bare model (the caller passes ``logits_range``)."""
    if pipeline is not None:
        pipeline.sampler.logits_window = on


class DLLMStrategy(Strategy):
    """Shared plumbing: no cache units; the owner decides where the figures come from.

    Owners: a diffaccel dLLM pipeline (figures from its last decode record), diffusers'
    ``LLaDA2Pipeline`` (a :class:`~diffaccel.dllm.llada2.LLaDA2StepHook` tells the hooks where the
    pipeline is and counts forwards), or a bare dLLM model (the caller passes ``decode_step``).
    Subclasses install and remove their own hooks in :meth:`install` / :meth:`uninstall`.
    """

    unit_level: ClassVar[str] = "custom"
    #: The engine's fixed-shape check protects per-shape feature caches, and dLLM strategies keep none
    #: keyed by shape: SSD's verification batches change size every round, ``LLaDA2Pipeline``'s window
    #: grows by one block per block, and the K/V caches and SparseD patterns are rebuilt whenever the
    #: sequence shape changes (tests: test_llada2.py, test_api.py).
    variable_input_shapes: ClassVar[bool] = True
    #: True when the strategy changes the decoding loop (block policy, commit schedule), which only a
    #: diffaccel dLLM pipeline exposes.
    needs_pipeline: ClassVar[bool] = False

    def __init__(self, config) -> None:
        super().__init__(config)
        self.pipeline = None
        self.step_hook = None
        self.planner = None
        self.cache = None
        self.sparse_state = None

    def attach(self, engine, owner) -> None:
        llada2 = is_llada2_pipeline(owner)
        self.pipeline = owner if _is_dllm_pipeline(owner) else None
        if llada2:
            self.check_llada2()
        elif self.needs_pipeline and self.pipeline is None:
            raise TypeError(
                f"{self.config.strategy_name} changes the decoding loop and needs a diffaccel dLLM "
                f"pipeline (LLaDAPipeline / DreamPipeline), got {type(owner).__name__}"
            )
        if self.pipeline is not None:
            self.check_family(self.pipeline.sampler.family)
        self.install(engine.root)
        if llada2:
            try:
                self.step_hook = attach_step_hook(engine.root, owner)
            except BaseException:
                self.uninstall(engine.root)
                raise

    def detach(self, engine, owner) -> None:
        if self.step_hook is not None:
            detach_step_hook(engine.root)
            self.step_hook = None
        self.uninstall(engine.root)
        self.pipeline = None

    def check_llada2(self) -> None:
        """Raise when this configuration cannot run inside ``LLaDA2Pipeline``'s own decoding loop."""
        if self.needs_pipeline:
            raise TypeError(
                f"{self.config.strategy_name} changes the decoding loop, which in LLaDA2Pipeline is "
                "diffusers' own; it needs a diffaccel dLLM pipeline (LLaDAPipeline / DreamPipeline)"
            )

    def check_family(self, family: str) -> None:
        """Raise :class:`~diffaccel.core.errors.UnsupportedFamilyError` at wrap time when this configuration does
        not support the pipeline's model family (``"llada"`` or ``"dream"``)."""

    def install(self, model) -> None:
        """Register this strategy's hooks on ``model`` (and its policy on :attr:`pipeline`, if any)."""

    def uninstall(self, model) -> None:
        """Undo :meth:`install`."""

    def report(self, engine) -> dict[str, Any]:
        out: dict[str, Any] = {}
        record = getattr(self.pipeline, "last_record", None)
        if record is not None and record.forward_calls:
            seq_len = self.pipeline.last_sequence_length or 0
            total = record.forward_rows * seq_len
            out.update(
                steps=record.steps,
                full_steps=record.forward_calls,
                computed_fraction=record.query_tokens / total if total else 1.0,
                forwards=record.forward_calls,
                forward_rows=record.forward_rows,
                query_tokens=record.query_tokens,
                committed_tokens=record.committed_tokens,
            )
            if record.accepted_per_round:
                out["mean_tokens_per_round"] = sum(record.accepted_per_round) / len(record.accepted_per_round)
        run = self.step_hook.state if self.step_hook is not None else None
        if run is not None and run.forwards:
            out.update(
                steps=run.forwards,
                full_steps=run.forwards,
                forwards=run.forwards,
                query_tokens=run.query_tokens,
                computed_fraction=run.query_tokens / run.window_tokens,
            )
        if self.planner is not None:
            out["full_steps"] = self.planner.full_forwards
            out["cached_forwards"] = self.planner.cached_forwards
        if self.cache is not None:
            out["cache_bytes"] = self.cache.nbytes()
        if self.sparse_state is not None:
            s = self.sparse_state
            out.update(
                dense_attention_calls=s.dense_calls,
                sparse_attention_calls=s.sparse_calls,
                dense_fallback_calls=s.fallback_calls,
            )
            if s.kept_fraction() is not None:
                out["attention_kept_fraction"] = s.kept_fraction()
        parts = [p for p in engine.strategies if isinstance(p, DLLMStrategy)]
        out["savings"] = {p.config.strategy_name: p.savings() for p in parts}
        return out

    def savings(self) -> dict[str, Any]:
        """What this part of a (possibly composed) wrap saved in the last run, in its own unit: forwards
        (NFE) for a decoding policy, tokens not run through the model for a cache, attention pairs for
        sparse attention. The same run's figures from every part form ``summary.extra["savings"]``."""
        return {}


class KVCacheStrategy(DLLMStrategy):
    """A K/V-cache planner executed by the subset-forward hooks of :mod:`diffaccel.dllm.kv_cache`."""

    def make_planner(self):
        raise NotImplementedError

    def install(self, model) -> None:
        self.planner = self.make_planner()
        if self.planner is not None:
            self.cache = attach_planner(model, self.planner)
            set_logits_window(self.pipeline, True)

    def uninstall(self, model) -> None:
        if self.planner is not None:
            detach_planner(model)
            set_logits_window(self.pipeline, False)

    def savings(self) -> dict[str, Any]:
        record = getattr(self.pipeline, "last_record", None)
        if self.planner is None:
            return {}
        out = {"full_forwards": self.planner.full_forwards, "cached_forwards": self.planner.cached_forwards}
        if record is not None and record.forward_rows and self.pipeline.last_sequence_length:
            every = record.forward_rows * self.pipeline.last_sequence_length
            out["tokens_not_run"] = every - record.query_tokens
            out["tokens_not_run_fraction"] = 1 - record.query_tokens / every
        return out


class DKVCache(KVCacheStrategy):
    def make_planner(self):
        return make_dkv_planner(self.config)

    def check_family(self, family: str) -> None:
        if family == "dream" and self.config.variant == "greedy":
            raise UnsupportedFamilyError(GREEDY_NOT_FOR_DREAM)

    def check_llada2(self) -> None:
        if self.config.variant == "greedy":
            raise ValueError(
                "dkv-cache variant='greedy' needs a decode order fixed before each forward "
                "(remasking='random_order'), which LLaDA2Pipeline does not have; use variant='decode'"
            )


class FastDLLM(KVCacheStrategy):
    needs_pipeline = True

    def make_planner(self):
        return make_fast_planner(self.config)

    def check_llada2(self) -> None:
        # the caches apply; the threshold rule is the pipeline's own (its `threshold=` call argument)
        if self.config.threshold is not None:
            raise ValueError(
                "on LLaDA2Pipeline fast-dllm attaches its cache only: the pipeline commits with its own "
                "threshold (pass threshold=... to the pipeline call); wrap with threshold=None"
            )

    def install(self, model) -> None:
        super().install(model)
        if self.pipeline is not None:
            self.pipeline.sampling_overrides = self.config.sampling_overrides()

    def uninstall(self, model) -> None:
        super().uninstall(model)
        if self.pipeline is not None:
            self.pipeline.sampling_overrides = {}


class SparseD(DLLMStrategy):
    def install(self, model) -> None:
        self.sparse_state = attach_sparsed(model, self.config)

    def uninstall(self, model) -> None:
        detach_sparsed(model)

    def savings(self) -> dict[str, Any]:
        s = self.sparse_state
        total = s.attention_pairs or 1
        return {
            "dense_calls": s.dense_calls,
            "sparse_calls": s.sparse_calls,
            "masked_calls": s.masked_calls,
            "attention_pairs_excluded_fraction": s.pairs_excluded / total,
            "attention_pairs_skipped_fraction": s.pairs_skipped / total,
        }


class SelfSpeculative(DLLMStrategy):
    """SSD; composes with Fast-dLLM's caches, whose later-step forwards depend only on the sequence and the
    block-start cache, so SSD stays token-identical to stepwise decoding with that cache."""

    needs_pipeline = True
    COMPOSES_WITH = (
        "ssd composes with fast-dllm without a threshold, FastDLLMConfig(threshold=None, cache='prefix' or "
        "'dual'), and is then token-identical to stepwise decoding with that cache"
    )

    def __init__(self, config) -> None:
        super().__init__(config)
        self.block_cache = False
        self.policy = None

    def check_composition(self, others) -> None:
        for other in others:
            name = other.config.strategy_name
            if isinstance(other, FastDLLM) and other.config.threshold is None:
                self.block_cache = self.block_cache or other.config.cache != "none"
                continue
            if isinstance(other, FastDLLM):
                why = "fast-dllm's threshold commits several tokens per step, and ssd's reference commits one"
            elif isinstance(other, DKVCache):
                why = (
                    "dkv-cache refreshes by step count and caches tokens one forward after they are decoded, "
                    "and ssd skips those forwards, so no stepwise reference would be reproduced"
                )
            elif isinstance(other, SparseD):
                why = "ssd verifies with dense attention while sparsed's steps are sparse"
            else:
                why = "it is not a dLLM strategy"
            raise ValueError(f"ssd cannot be composed with {name}: {why}; {self.COMPOSES_WITH}")

    def check_family(self, family: str) -> None:
        if family == "dream" and self.block_cache:
            raise UnsupportedFamilyError(BLOCK_CACHE_NOT_FOR_DREAM)

    def install(self, model) -> None:
        if self.pipeline.block_policy is not None:
            raise ValueError("the pipeline already has a custom block policy")
        self.policy = SelfSpeculativeDecoding(self.config, block_cache=self.block_cache)
        self.pipeline.block_policy = self.policy
        set_logits_window(self.pipeline, True)

    def uninstall(self, model) -> None:
        if self.pipeline is not None:
            self.pipeline.block_policy = None
            set_logits_window(self.pipeline, False)

    def savings(self) -> dict[str, Any]:
        record = getattr(self.pipeline, "last_record", None)
        if record is None or not record.forward_calls or self.policy is None:
            return {}
        stepwise = self.policy.reference_forwards
        return {
            "forwards": record.forward_calls,
            "stepwise_forwards": stepwise,
            "forwards_saved": stepwise - record.forward_calls,
            "verification_rows": self.policy.verification_rows,
        }


def register_dllm_strategies() -> None:
    register_strategy(
        DKVCacheConfig,
        DKVCache,
        "dKV-Cache: delayed key/value caching for diffusion LMs (Decode, Greedy)",
        domain="dllm",
    )
    register_strategy(
        SparseDConfig, SparseD, "SparseD: head-specific block-sparse attention after the early steps", domain="dllm"
    )
    register_strategy(SSDConfig, SelfSpeculative, "lossless self-speculative decoding for diffusion LMs", domain="dllm")
    register_strategy(
        FastDLLMConfig,
        FastDLLM,
        "Fast-dLLM peer: confidence-threshold parallel decoding + prefix/dual cache",
        domain="dllm",
    )


register_dllm_strategies()
