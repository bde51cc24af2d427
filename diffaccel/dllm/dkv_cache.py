"""dKV-Cache: delayed key/value caching for diffusion LMs (arXiv 2505.15781; horseee/dKV-Cache).

A token's keys/values keep changing while it is ``[MASK]`` and once more in the step right after it
is decoded, then stay nearly stable. So:

* **Decode** (`llada_dkv_cache_decode.py`): never cache masked tokens; cache a token from the second forward after
  its decoding on ("one-step delay"); refresh everything every ``refresh_interval`` steps and at
  every semi-AR block start. Within a block, step ``i``: ``i == 0`` full forward, nothing cached;
  ``i == 1`` or ``i % R == 0`` full forward storing every decoded position; otherwise run only the
  positions not in the cache (masked + decoded at step ``i-1``) against the cached rest.
  ``R = 1`` makes every step a full forward, hence identical to no cache.
* **Greedy** (`llada_dkv_cache_greedy.py`): needs a decode order fixed in advance (``remasking="random_order"``);
  the cache holds every position from the last refresh (``i % R == 0``); other steps run only the
  tokens decoded at ``i-1``, the ones to decode now and a ``window_size`` of masked neighbours.

Dream (shifted logits, `dream_generation_utils*.py`): ``shift_type`` decides which positions are cacheable (``"un"``:
the next token is decoded, the official default; ``"un_right"``: it and the next are decoded;
``"right"``: it is decoded); positions whose output the sampler reads are always run (ours: the
official code handles the first-position quirk differently). Refreshes follow the LLaDA rule above
for both families [ours for Dream, whose official code refreshes at ``i % R == 0`` only].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..core.errors import UnsupportedFamilyError
from ..strategies.base import StrategyConfig
from .kv_cache import BlockPlanner, KVCache, SubsetPlan

SHIFT_TYPES = ("un", "un_right", "right")


@dataclass
class DKVCacheConfig(StrategyConfig):
    """Options of dKV-Cache.

    Attributes:
        variant: ``"decode"`` (paper's dKV-Cache-Decode) or ``"greedy"`` (dKV-Cache-Greedy).
        refresh_interval: ``R``, full refresh every ``R`` steps within a block; ``None`` = the paper's
            value (8 for Decode, 2 for Greedy).
        window_size: Greedy only: masked neighbours recomputed around each token to decode (paper 4).
        shift_type: Dream only: which positions count as cacheable (see module docstring).
    """

    strategy_name: ClassVar[str] = "dkv-cache"
    tag_fields: ClassVar[tuple[str, ...]] = ("variant",)

    variant: str = "decode"
    refresh_interval: int | None = None
    window_size: int = 0
    shift_type: str = "un"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.variant not in ("decode", "greedy"):
            raise ValueError(f"variant must be 'decode' or 'greedy', got {self.variant!r}")
        if self.refresh_interval is None:
            self.refresh_interval = 8 if self.variant == "decode" else 2
        if not isinstance(self.refresh_interval, int) or self.refresh_interval < 1:
            raise ValueError(f"refresh_interval must be a positive integer, got {self.refresh_interval!r}")
        if self.window_size < 0:
            raise ValueError(f"window_size must be >= 0, got {self.window_size}")
        if self.shift_type not in SHIFT_TYPES:
            raise ValueError(f"shift_type must be one of {SHIFT_TYPES}, got {self.shift_type!r}")


def cacheable_positions(input_ids: torch.Tensor, mask_id: int, shifted: bool, shift_type: str) -> torch.Tensor:
    """Positions whose keys/values may be cached (Decode rule; Dream's ``shift_type``)."""
    decoded = input_ids != mask_id
    if not shifted or shift_type == "right":
        return decoded
    next_decoded = torch.ones_like(decoded)
    next_decoded[:, :-1] = decoded[:, 1:]
    return next_decoded if shift_type == "un" else next_decoded & decoded


def greedy_window(planned: torch.Tensor, masked: torch.Tensor, window_size: int) -> torch.Tensor:
    """For each planned position, its ``window_size`` nearest other masked positions, alternating
    left and right (left first at equal distance)."""
    out = torch.zeros_like(planned)
    if window_size == 0:
        return out
    length = planned.shape[1]
    for row in range(planned.shape[0]):
        free = masked[row] & ~planned[row]
        for p in planned[row].nonzero().flatten().tolist():
            taken = 0
            for distance in range(1, length):
                for q in (p - distance, p + distance):
                    if taken < window_size and 0 <= q < length and free[q]:
                        out[row, q] = True
                        taken += 1
                if taken >= window_size:
                    break
    return out


class DKVPlanner(BlockPlanner):
    """A planner reading the options of a :class:`DKVCacheConfig`."""

    def __init__(self, config: DKVCacheConfig) -> None:
        super().__init__()
        self.config = config


class DKVDecodePlanner(DKVPlanner):
    name = "dkv-cache (decode)"

    def plan(self, input_ids, step, cache: KVCache) -> SubsetPlan:
        self.start(input_ids, step, cache)
        i, r = step.step_in_block, self.config.refresh_interval
        cacheable = cacheable_positions(input_ids, step.mask_id, step.shifted_logits, self.config.shift_type)
        if i == 0:
            return self.full(input_ids, store=torch.zeros_like(cacheable))
        if i == 1 or i % r == 0 or cache.valid is None:
            return self.full(input_ids, store=cacheable)
        from_cache = cache.valid & ~self.needed_outputs(input_ids, step)
        return self.subset(input_ids, from_cache, cacheable) or self.full(input_ids, store=cacheable)


#: why dKV-Cache-Greedy refuses Dream (wrap time and, for bare models, at the first forward)
GREEDY_NOT_FOR_DREAM = (
    "dkv-cache variant='greedy' is defined for LLaDA-style models only: it needs a decode order fixed before "
    "each forward (LLaDA's remasking='random_order'), which Dream's sampler has no counterpart of; use "
    "variant='decode' (with shift_type) on Dream"
)


class DKVGreedyPlanner(DKVPlanner):
    name = "dkv-cache (greedy)"

    def plan(self, input_ids, step, cache: KVCache) -> SubsetPlan:
        self.start(input_ids, step, cache)
        if step.shifted_logits:
            raise UnsupportedFamilyError(GREEDY_NOT_FOR_DREAM)
        if step.planned_commit is None:
            raise ValueError(
                "dkv-cache variant='greedy' needs a decode order fixed in advance: "
                "sample with remasking='random_order' (dKV-Cache-Greedy)"
            )
        everything = torch.ones_like(input_ids, dtype=torch.bool)
        if step.step_in_block % self.config.refresh_interval == 0 or cache.valid is None or self.previous is None:
            return self.full(input_ids, store=everything)
        masked = input_ids == step.mask_id
        just_decoded = ~masked & (self.previous == step.mask_id)
        planned = step.planned_commit
        active = just_decoded | planned | greedy_window(planned, masked, self.config.window_size)
        return self.subset(input_ids, ~active, everything) or self.full(input_ids, store=everything)


def make_planner(config: DKVCacheConfig) -> BlockPlanner:
    return DKVDecodePlanner(config) if config.variant == "decode" else DKVGreedyPlanner(config)
