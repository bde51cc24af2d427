"""Attaching dLLM strategies to a pipeline, removing them, and summarising what they did.

``wrap(pipe, "dkv-cache", refresh_interval=4)`` / ``unwrap(pipe)`` / ``summary(pipe)`` for the
pipelines of :mod:`diffaccel.dllm.pipeline` (and any object with ``.model``, a diffaccel dLLM model,
and a ``block_policy`` slot). Strategy names and option parsing follow the core's conventions
(configs are :class:`diffaccel.strategies.base.StrategyConfig` subclasses, so ``strify`` tags and
``name:key=value`` CLI specs work the same as for image strategies). Everything attaches as
diffusers ``ModelHook`` s (model and attention modules) or as the pipeline's block policy, and
``unwrap`` removes exactly that.

What is *not* shared with the image engine yet is its step clock and ``RunStats``: those count
compute-or-forecast cache units, while dLLM strategies change which tokens and keys a forward
computes. See ``docs/dllm/README-section.md`` ("Integration with the core") for the extension
point this needs from ``diffaccel.core``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import AlreadyWrappedError, NotWrappedError, UnknownStrategyError
from ..strategies.base import StrategyConfig
from ..strategies.registry import parse_strategy_spec
from .dkv_cache import DKVCacheConfig
from .dkv_cache import make_planner as make_dkv_planner
from .fast_dllm import FastDLLMConfig
from .fast_dllm import make_planner as make_fast_planner
from .kv_cache import KVCache, attach_planner, detach_planner
from .sparsed import SparseDConfig, SparseDState, attach_sparsed, detach_sparsed
from .ssd import SelfSpeculativeDecoding, SSDConfig

logger = logging.getLogger(__name__)

BINDING_ATTR = "_diffaccel_dllm"
DLLM_STRATEGIES: dict[str, type[StrategyConfig]] = {
    "dkv-cache": DKVCacheConfig,
    "sparsed": SparseDConfig,
    "ssd": SSDConfig,
    "fast-dllm": FastDLLMConfig,
}


@dataclass
class DLLMBinding:
    config: StrategyConfig
    cache: KVCache | None = None
    planner: Any = None
    sparse_state: SparseDState | None = None
    policy: SelfSpeculativeDecoding | None = None
    sampling_overrides: dict = field(default_factory=dict)


def dllm_strategies() -> list[str]:
    return sorted(DLLM_STRATEGIES)


def resolve(strategy: str | StrategyConfig, options: dict) -> StrategyConfig:
    """A validated config from a name (``"dkv-cache"``, ``"dkv-cache:refresh_interval=4"``) or a config object."""
    if isinstance(strategy, StrategyConfig):
        if strategy.strategy_name not in DLLM_STRATEGIES:
            raise UnknownStrategyError(f"'{strategy.strategy_name}' is not a dLLM strategy; "
                                       f"available: {', '.join(dllm_strategies())}")
        return strategy.replace(**options) if options else strategy
    if not isinstance(strategy, str):
        raise TypeError(f"a strategy is a name or a config object, got {type(strategy).__name__}")
    name, spec_options = parse_strategy_spec(strategy)
    if name not in DLLM_STRATEGIES:
        raise UnknownStrategyError(f"Unknown dLLM strategy '{name}'. Available: {', '.join(dllm_strategies())}.")
    return DLLM_STRATEGIES[name]().replace(**{**spec_options, **options})


def wrap(pipe, strategy: str | StrategyConfig, **options):
    """Attach one dLLM strategy to ``pipe``; returns ``pipe``."""
    if getattr(pipe, BINDING_ATTR, None) is not None:
        raise AlreadyWrappedError(f"{type(pipe).__name__} already runs {getattr(pipe, BINDING_ATTR).config.strify()}; "
                                  "call unwrap(pipe) first")
    model = getattr(pipe, "model", None)
    if model is None or not hasattr(pipe, "block_policy"):
        raise TypeError(f"{type(pipe).__name__} is not a diffaccel dLLM pipeline (needs .model and .block_policy)")
    config = resolve(strategy, options)
    binding = DLLMBinding(config=config)
    if isinstance(config, DKVCacheConfig):
        binding.planner = make_dkv_planner(config)
        binding.cache = attach_planner(model, binding.planner)
    elif isinstance(config, FastDLLMConfig):
        binding.planner = make_fast_planner(config)
        if binding.planner is not None:
            binding.cache = attach_planner(model, binding.planner)
        if config.threshold is not None:
            binding.sampling_overrides = {"schedule": "threshold", "threshold": float(config.threshold)}
    elif isinstance(config, SparseDConfig):
        binding.sparse_state = attach_sparsed(model, config)
    elif isinstance(config, SSDConfig):
        if pipe.block_policy is not None:
            raise AlreadyWrappedError("the pipeline already has a custom block policy")
        binding.policy = SelfSpeculativeDecoding(config)
        pipe.block_policy = binding.policy
    pipe.sampling_overrides = dict(binding.sampling_overrides)
    setattr(pipe, BINDING_ATTR, binding)
    logger.info("diffaccel.dllm: %s on %s", config.strify(), type(model).__name__)
    return pipe


def unwrap(pipe):
    """Remove what :func:`wrap` attached; outputs are then those of the plain pipeline."""
    binding = _binding(pipe)
    if binding.cache is not None:
        detach_planner(pipe.model)
    if binding.sparse_state is not None:
        detach_sparsed(pipe.model)
    if binding.policy is not None:
        pipe.block_policy = None
    pipe.sampling_overrides = {}
    delattr(pipe, BINDING_ATTR)
    return pipe


@dataclass
class DLLMSummary:
    """What the most recent run of a wrapped dLLM pipeline did.

    ``steps`` are commit rounds (SSD: rounds; others: denoising steps); ``full_steps`` forwards that
    computed every token; ``computed_fraction`` the share of query tokens computed over all forwards
    (1.0 without a KV cache); ``nfe`` model calls; ``forward_rows`` sequences pushed through the
    model (an SSD verification batch of N+1 counts N+1).
    """

    strategy: str
    steps: int
    full_steps: int
    computed_fraction: float
    cache_bytes: int
    nfe: int
    forward_rows: int
    query_tokens: int
    committed_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(out.pop("extra"))
        return out

    def __str__(self) -> str:
        lines = [f"diffaccel summary: {self.strategy}",
                 f"  steps {self.steps}, full steps {self.full_steps}, computed fraction {self.computed_fraction:.3f}, "
                 f"cache {self.cache_bytes / 2**20:.2f} MiB",
                 f"  forwards (NFE) {self.nfe}, rows {self.forward_rows}, query tokens {self.query_tokens}, "
                 f"tokens committed {self.committed_tokens}"]
        lines += [f"  {k}: {v}" for k, v in self.extra.items()]
        return "\n".join(lines)


def summary(pipe) -> DLLMSummary:
    binding = _binding(pipe)
    record = pipe.last_record
    if record is None:
        raise NotWrappedError("the pipeline has not run since it was wrapped")
    seq_len = getattr(pipe, "last_sequence_length", None) or 0
    total_tokens = record.forward_rows * seq_len if seq_len else record.query_tokens
    full_steps = record.forward_calls
    extra: dict[str, Any] = {}
    if binding.planner is not None:
        full_steps = binding.planner.full_forwards
        extra["cached_forwards"] = binding.planner.cached_forwards
    if binding.sparse_state is not None:
        state = binding.sparse_state
        extra.update(dense_attention_calls=state.dense_calls, sparse_attention_calls=state.sparse_calls,
                     dense_fallback_calls=state.fallback_calls, attention_kept_fraction=state.kept_fraction())
    if record.accepted_per_round:
        extra["mean_tokens_per_round"] = sum(record.accepted_per_round) / len(record.accepted_per_round)
    return DLLMSummary(
        strategy=binding.config.strify(), steps=record.steps, full_steps=full_steps,
        computed_fraction=record.query_tokens / total_tokens if total_tokens else 1.0,
        cache_bytes=binding.cache.nbytes() if binding.cache is not None else 0,
        nfe=record.forward_calls, forward_rows=record.forward_rows, query_tokens=record.query_tokens,
        committed_tokens=record.committed_tokens, extra=extra,
    )


def _binding(pipe) -> DLLMBinding:
    binding = getattr(pipe, BINDING_ATTR, None)
    if binding is None:
        raise NotWrappedError(f"{type(pipe).__name__} is not wrapped by diffaccel.dllm (call wrap first)")
    return binding
