"""Fast-dLLM (v1) as a peer baseline: threshold parallel decoding and block-level caches (arXiv 2505.22618; NVlabs/Fast-dLLM v1).

* Parallel decoding: inside the current block commit the top-1 masked position plus every
  masked position whose confidence reaches ``threshold`` (0.9 in the paper), until the block is
  complete. This is the sampler's ``schedule="threshold"``.
* PrefixCache: at each block start a full forward keeps the keys/values of every position
  before the block; later steps of the block run ``x[block_start:]`` against them.
* DualCache: the block-start forward keeps every position; later steps run only the block
  and reuse the (stale) keys/values of the prefix and of the masked suffix.

Dream [ours]: the official Dream port commits the first block position unconditionally at the
block start because its shifted logit is not available from block-local inputs (Fast-dLLM's Dream code); here the
position left of every masked position is simply also run, so the commit rule stays the sampler's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..strategies.base import StrategyConfig
from .kv_cache import BlockPlanner, KVCache, SubsetPlan

CACHE_MODES = ("none", "prefix", "dual")


@dataclass
class FastDLLMConfig(StrategyConfig):
    """Options of the Fast-dLLM peer.

    Attributes:
        threshold: confidence threshold of parallel decoding; ``None`` keeps the fixed schedule.
        cache: ``"prefix"``, ``"dual"`` or ``"none"``.
    """

    strategy_name: ClassVar[str] = "fast-dllm"
    tag_fields: ClassVar[tuple[str, ...]] = ('threshold', 'cache')


    threshold: float | None = 0.9
    cache: str = "prefix"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}, got {self.cache!r}")
        if self.threshold is not None and not isinstance(self.threshold, (int, float)):
            raise ValueError(f"threshold must be a number or None, got {self.threshold!r}")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"fast-dllm threshold is a confidence in (0, 1] (the paper uses 0.9), got {self.threshold}")


def block_region(input_ids: torch.Tensor, step) -> tuple[torch.Tensor, torch.Tensor]:
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    return positions < step.block_start, (positions >= step.block_start) & (positions < step.block_end)


class PrefixCachePlanner(BlockPlanner):
    name = "fast-dllm prefix cache"

    def plan(self, input_ids, step, cache: KVCache) -> SubsetPlan:
        self.start(input_ids, step, cache)
        prefix, _ = block_region(input_ids, step)
        if step.step_in_block == 0 or cache.valid is None:
            return self.full(input_ids, store=prefix)
        from_cache = prefix & ~self.needed_outputs(input_ids, step)
        return self.subset(input_ids, from_cache, torch.zeros_like(prefix)) or self.full(input_ids, store=prefix)


class DualCachePlanner(BlockPlanner):
    name = "fast-dllm dual cache"

    def plan(self, input_ids, step, cache: KVCache) -> SubsetPlan:
        self.start(input_ids, step, cache)
        everything = torch.ones_like(input_ids, dtype=torch.bool)
        _, block = block_region(input_ids, step)
        if step.step_in_block == 0 or cache.valid is None:
            return self.full(input_ids, store=everything)
        needed = self.needed_outputs(input_ids, step) & (block | torch.roll(block, -1, dims=1))
        run = block | needed
        return self.subset(input_ids, ~run, run) or self.full(input_ids, store=everything)


def make_planner(config: FastDLLMConfig) -> BlockPlanner | None:
    if config.cache == "prefix":
        return PrefixCachePlanner()
    if config.cache == "dual":
        return DualCachePlanner()
    return None
