"""Fast-dLLM (v1) as a peer baseline: threshold parallel decoding and block-level caches (arXiv 2505.22618; NVlabs/Fast-dLLM v1).

* Parallel decoding: inside the current block commit the top-1 masked position plus every
  masked position whose confidence reaches ``threshold`` (0.9 in the paper), until the block is
  complete. This is the sampler's ``schedule="threshold"``.
* PrefixCache: at each block start a full forward keeps the keys/values of every position
  before the block; later steps of the block run ``x[block_start:]`` against them.
* DualCache: the block-start forward keeps every position; later steps run only the block
  and reuse the (stale) keys/values of the prefix and of the masked suffix.

Numerics and forwards as the official code (NVlabs/Fast-dLLM ``llada/generate.py``): confidences from a
float64 softmax, ``torch.topk`` over the positions each forward returns (the whole sequence at a block
start; from the block start on with the prefix cache; the block alone with the dual cache), the best
candidate taken from a full ``torch.topk`` sort, and, with a cache, at least one forward after the
block-start forward even when that forward already completed the block (the official loop checks for
completion only after its forward). ``skip_idle_forward=True`` [ours] skips that forward, which
changes no token; ``numerics="stable"`` [ours] uses the deterministic lowest-position tie rule.

Dream [ours]: the official Dream port commits the first block position unconditionally at the
block start because its shifted logit is not available from block-local inputs (Fast-dLLM's Dream code); here the
position left of every masked position is simply also run, so the commit rule stays the sampler's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..strategies.base import StrategyConfig
from .kv_cache import BlockPlanner, KVCache, SubsetPlan, equal_row_counts

CACHE_MODES = ("none", "prefix", "dual")


@dataclass
class FastDLLMConfig(StrategyConfig):
    """Options of the Fast-dLLM peer.

    Attributes:
        threshold: confidence threshold of parallel decoding; ``None`` keeps the fixed schedule.
        cache: ``"prefix"``, ``"dual"`` or ``"none"``.
        numerics: ``"official"`` (Fast-dLLM's float64 confidences and ``torch.topk`` windows) or
            ``"stable"`` [ours] (float64, lowest position on ties).
        skip_idle_forward: [ours] skip the forward the official cached loop runs on a block that its
            block-start forward already completed (same tokens, one forward fewer per such block).
    """

    strategy_name: ClassVar[str] = "fast-dllm"
    tag_fields: ClassVar[tuple[str, ...]] = ("threshold", "cache")

    threshold: float | None = 0.9
    cache: str = "prefix"
    numerics: str = "official"
    skip_idle_forward: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, got {self.cache!r}")
        if self.threshold is not None and not isinstance(self.threshold, (int, float)):
            raise ValueError(f"threshold must be a number or None, got {self.threshold!r}")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise ValueError(
                f"fast-dllm threshold is a confidence in (0, 1] (the paper uses 0.9), got {self.threshold}"
            )
        if self.numerics not in ("official", "stable"):
            raise ValueError(f"numerics must be 'official' or 'stable', got {self.numerics!r}")
        if not isinstance(self.skip_idle_forward, bool):
            raise ValueError(f"skip_idle_forward must be a bool, got {self.skip_idle_forward!r}")

    def sampling_overrides(self) -> dict:
        """The sampler settings that make the shared loop run as Fast-dLLM's (see the module docstring)."""
        overrides = {
            "numerics": "fast-dllm" if self.numerics == "official" else "stable",
            "selection_window": {"none": "sequence", "prefix": "from-block", "dual": "block"}[self.cache],
            "min_block_forwards": 1 if self.skip_idle_forward or self.cache == "none" else 2,
        }
        if self.threshold is not None:
            overrides.update(schedule="threshold", threshold=float(self.threshold))
        return overrides


def block_region(input_ids: torch.Tensor, step) -> tuple[torch.Tensor, torch.Tensor]:
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    return positions < step.block_start, (positions >= step.block_start) & (positions < step.block_end)


class FastPlanner(BlockPlanner):
    """Fast-dLLM's caches are refreshed only at block starts, so a later step's forward depends on the
    sequence and the block-start cache alone: self-speculative verification can be served exactly."""

    serves_verification = True

    def from_cache(self, input_ids, step) -> torch.Tensor:
        """Positions read from the cache at a step after the block's first forward."""
        raise NotImplementedError

    def plan_verify(self, input_ids, step, valid: torch.Tensor) -> SubsetPlan | None:
        from_cache = self.from_cache(input_ids, step) & valid
        run = ~from_cache
        if not equal_row_counts(run):
            return None
        self.cached_forwards += 1
        return SubsetPlan(run=run, from_cache=from_cache, store=torch.zeros_like(run))


class PrefixCachePlanner(FastPlanner):
    name = "fast-dllm prefix cache"

    def from_cache(self, input_ids, step) -> torch.Tensor:
        prefix, _ = block_region(input_ids, step)
        return prefix & ~self.needed_outputs(input_ids, step)

    def plan(self, input_ids, step, cache: KVCache) -> SubsetPlan:
        self.start(input_ids, step, cache)
        prefix, _ = block_region(input_ids, step)
        if step.step_in_block == 0 or cache.valid is None:
            return self.full(input_ids, store=prefix)
        return self.subset(input_ids, self.from_cache(input_ids, step), torch.zeros_like(prefix)) or self.full(
            input_ids, store=prefix
        )


class DualCachePlanner(FastPlanner):
    name = "fast-dllm dual cache"

    def from_cache(self, input_ids, step) -> torch.Tensor:
        _, block = block_region(input_ids, step)
        needed = self.needed_outputs(input_ids, step) & (block | torch.roll(block, -1, dims=1))
        return ~(block | needed)

    def plan(self, input_ids, step, cache: KVCache) -> SubsetPlan:
        self.start(input_ids, step, cache)
        everything = torch.ones_like(input_ids, dtype=torch.bool)
        if step.step_in_block == 0 or cache.valid is None:
            return self.full(input_ids, store=everything)
        from_cache = self.from_cache(input_ids, step)
        return self.subset(input_ids, from_cache, ~from_cache) or self.full(input_ids, store=everything)


def make_planner(config: FastDLLMConfig) -> BlockPlanner | None:
    if config.cache == "prefix":
        return PrefixCachePlanner()
    if config.cache == "dual":
        return DualCachePlanner()
    return None
