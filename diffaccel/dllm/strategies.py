"""The dLLM strategies as engine strategies: ``diffaccel.wrap(pipe, "dkv-cache", refresh_interval=4)``.

Each is a :class:`diffaccel.strategies.base.Strategy` with ``unit_level = "custom"``: the engine
attaches its own hook (step clock, input checks, run resets, statistics) to the pipeline's model, then
calls :meth:`attach`, where the strategy registers its hooks through ``diffusers.hooks.HookRegistry``
(KV caches and SparseD) or installs its block policy on the pipeline (SSD); ``unwrap`` calls
:meth:`detach`. :meth:`report` fills ``diffaccel.summary``: ``steps`` are commit rounds,
``full_steps`` forwards over every token, ``computed_fraction`` the share of (row, position) tokens
the transformer computed, plus forwards (NFE), rows, tokens and method-specific figures.

Runs: a dLLM pipeline call resets the model's stateful hooks first (as diffusers pipelines do
after a call), so every call is one run of the engine's clock.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..strategies.base import Strategy
from ..strategies.registry import register_strategy
from .dkv_cache import DKVCacheConfig
from .dkv_cache import make_planner as make_dkv_planner
from .fast_dllm import FastDLLMConfig
from .fast_dllm import make_planner as make_fast_planner
from .kv_cache import attach_planner, detach_planner
from .sparsed import SparseDConfig, attach_sparsed, detach_sparsed
from .ssd import SelfSpeculativeDecoding, SSDConfig


def _pipeline(owner, strategy_name: str, needs_pipeline: bool):
    if hasattr(owner, "block_policy") and hasattr(owner, "sampler"):
        return owner
    if needs_pipeline:
        raise TypeError(f"{strategy_name} changes the decoding loop and needs a diffaccel dLLM pipeline "
                        f"(LLaDAPipeline / DreamPipeline), got {type(owner).__name__}")
    return None


class DLLMStrategy(Strategy):
    """Shared plumbing: no cache units; figures from the pipeline's last decode record."""

    unit_level: ClassVar[str] = "custom"
    needs_pipeline: ClassVar[bool] = False

    def __init__(self, config) -> None:
        super().__init__(config)
        self.pipeline = None
        self.planner = None
        self.cache = None
        self.sparse_state = None

    def attach(self, engine, owner) -> None:
        self.pipeline = _pipeline(owner, self.config.strategy_name, self.needs_pipeline)

    def detach(self, engine, owner) -> None:
        self.pipeline = None

    def report(self, engine) -> dict[str, Any]:
        out: dict[str, Any] = {}
        record = getattr(self.pipeline, "last_record", None) if self.pipeline is not None else None
        if record is not None and record.forward_calls:
            seq_len = self.pipeline.last_sequence_length or 0
            total = record.forward_rows * seq_len
            out.update(steps=record.steps, full_steps=record.forward_calls,
                       computed_fraction=record.query_tokens / total if total else 1.0,
                       forwards=record.forward_calls, forward_rows=record.forward_rows,
                       query_tokens=record.query_tokens, committed_tokens=record.committed_tokens)
            if record.accepted_per_round:
                out["mean_tokens_per_round"] = sum(record.accepted_per_round) / len(record.accepted_per_round)
        if self.planner is not None:
            out["full_steps"] = self.planner.full_forwards
            out["cached_forwards"] = self.planner.cached_forwards
        if self.cache is not None:
            out["cache_bytes"] = self.cache.nbytes()
        if self.sparse_state is not None:
            s = self.sparse_state
            out.update(dense_attention_calls=s.dense_calls, sparse_attention_calls=s.sparse_calls,
                       dense_fallback_calls=s.fallback_calls)
            if s.kept_fraction() is not None:
                out["attention_kept_fraction"] = s.kept_fraction()
        return out

    def new_state(self, *args, **kwargs):
        raise AssertionError("dLLM strategies have no cache units")

    must_compute = observe = forecast = new_state


class DKVCache(DLLMStrategy):
    def attach(self, engine, owner) -> None:
        super().attach(engine, owner)
        self.planner = make_dkv_planner(self.config)
        self.cache = attach_planner(engine.root, self.planner)

    def detach(self, engine, owner) -> None:
        detach_planner(engine.root)
        super().detach(engine, owner)


class FastDLLM(DLLMStrategy):
    needs_pipeline = True

    def attach(self, engine, owner) -> None:
        super().attach(engine, owner)
        self.planner = make_fast_planner(self.config)
        if self.planner is not None:
            self.cache = attach_planner(engine.root, self.planner)
        if self.config.threshold is not None:
            self.pipeline.sampling_overrides = {"schedule": "threshold", "threshold": float(self.config.threshold)}

    def detach(self, engine, owner) -> None:
        if self.planner is not None:
            detach_planner(engine.root)
        if self.pipeline is not None:
            self.pipeline.sampling_overrides = {}
        super().detach(engine, owner)


class SparseD(DLLMStrategy):
    def attach(self, engine, owner) -> None:
        super().attach(engine, owner)
        self.sparse_state = attach_sparsed(engine.root, self.config)

    def detach(self, engine, owner) -> None:
        detach_sparsed(engine.root)
        super().detach(engine, owner)


class SelfSpeculative(DLLMStrategy):
    needs_pipeline = True

    def attach(self, engine, owner) -> None:
        super().attach(engine, owner)
        if self.pipeline.block_policy is not None:
            raise ValueError("the pipeline already has a custom block policy")
        # fixed shapes per call kind: the engine checks that input shapes stay fixed within a run
        self.pipeline.block_policy = SelfSpeculativeDecoding(self.config, fixed_shapes=True, context_owner=owner)

    def detach(self, engine, owner) -> None:
        if self.pipeline is not None:
            self.pipeline.block_policy = None
        super().detach(engine, owner)


def register_dllm_strategies() -> None:
    register_strategy(DKVCacheConfig, DKVCache, "dKV-Cache: delayed key/value caching for diffusion LMs (Decode, Greedy)")
    register_strategy(SparseDConfig, SparseD, "SparseD: head-specific block-sparse attention after the early steps")
    register_strategy(SSDConfig, SelfSpeculative, "lossless self-speculative decoding for diffusion LMs")
    register_strategy(FastDLLMConfig, FastDLLM, "Fast-dLLM peer: confidence-threshold parallel decoding + prefix/dual cache")


register_dllm_strategies()
