"""Subset forwards over a key/value cache: the machinery dKV-Cache and Fast-dLLM's caches share.

A *planner* (one per method) looks at the sequence the sampler passes and at the
:class:`~diffaccel.dllm.sampler.DecodeStep`, and returns a :class:`SubsetPlan`: which positions to
run through the transformer, which positions' keys/values to take from the cache instead, and which
freshly computed keys/values to store. Two diffusers ``ModelHook`` s execute the plan:

* :class:`SubsetForwardHook` on the model runs only the planned tokens (with their true RoPE
  positions) and scatters their logits back to full length;
* :class:`CachedAttentionHook` on every :class:`~diffaccel.dllm.attention.BidirectionalAttention`
  stores fresh K/V and appends the cached K/V of the positions that were not run. Bidirectional
  attention is order-free and RoPE is applied before caching, so the key order does not matter.

Positions that are not run get zero logits; every planner guarantees that the positions the
sampler may commit at this step are run (tests check the resulting outputs against references).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from diffusers.hooks import HookRegistry, ModelHook
from torch import nn

from .attention import BidirectionalAttention
from .outputs import DiffusionLMOutput

logger = logging.getLogger(__name__)

SUBSET_HOOK = "diffaccel.dllm.subset_forward"
KV_HOOK = "diffaccel.dllm.cached_attention"


@dataclass
class SubsetPlan:
    """One forward: ``run`` ``[B, N]`` positions to compute (equal count per row), ``from_cache``
    ``[B, N]`` positions whose keys/values come from the cache (disjoint from ``run``), ``store``
    ``[B, N]`` positions (within ``run``) whose fresh keys/values are written to the cache;
    ``reset_valid``: after this forward the cache holds exactly ``store`` (else it gains ``store``)."""

    run: torch.Tensor
    from_cache: torch.Tensor
    store: torch.Tensor
    reset_valid: bool = False

    def __post_init__(self) -> None:
        if (self.run & self.from_cache).any():
            raise AssertionError("a position cannot be both run and read from the cache")
        if (self.store & ~self.run).any():
            raise AssertionError("only positions that are run can be stored")

    @property
    def is_full(self) -> bool:
        return bool(self.run.all())


@dataclass
class LayerKV:
    keys: torch.Tensor  # [B, Hkv, N, D]
    values: torch.Tensor


@dataclass
class KVCache:
    """Per-layer keys/values at their sequence positions plus the set of valid positions."""

    layers: dict[int, LayerKV] = field(default_factory=dict)
    valid: torch.Tensor | None = None  # [B, N] bool
    plan: SubsetPlan | None = None  # the plan of the forward in flight
    run_index: torch.Tensor | None = None  # [B, nA] positions of the tokens in flight
    rows: torch.Tensor | None = None  # a verification forward: the cache row of each sequence in flight

    def clear(self) -> None:
        self.layers.clear()
        self.valid = None
        self.plan = None
        self.run_index = None
        self.rows = None

    def nbytes(self) -> int:
        return sum(kv.keys.numel() * kv.keys.element_size() * 2 for kv in self.layers.values())


def equal_row_counts(mask: torch.Tensor) -> bool:
    counts = mask.sum(dim=1)
    return bool((counts == counts[0]).all())


def row_positions(mask: torch.Tensor) -> torch.Tensor:
    """``[B, c]`` sorted positions of a mask with ``c`` True entries in every row."""
    return mask.nonzero()[:, 1].view(mask.shape[0], -1)


class CachedAttentionHook(ModelHook):
    """Stores fresh K/V of the planned positions and attends over fresh + cached K/V."""

    def __init__(self, cache: KVCache, layer_index: int) -> None:
        super().__init__()
        self.cache = cache
        self.layer_index = layer_index

    def new_forward(self, module: nn.Module, q, k, v, positions=None, key_padding_mask=None, key_positions=None):
        kernel = self.fn_ref.original_forward  # dense attention, or a sparse kernel hooked beneath this one
        plan = self.cache.plan
        if plan is None:
            return kernel(q, k, v, positions=positions, key_padding_mask=key_padding_mask, key_positions=key_positions)
        index = self.cache.run_index
        key_positions = index
        batch, heads, _, dim = k.shape
        n = plan.run.shape[1]
        layer = self.cache.layers.get(self.layer_index)
        if plan.store.any():
            if layer is None or layer.keys.shape != (batch, heads, n, dim) or layer.keys.dtype != k.dtype:
                layer = LayerKV(k.new_zeros(batch, heads, n, dim), v.new_zeros(batch, heads, n, dim))
                self.cache.layers[self.layer_index] = layer
            # in place, at the run positions only (old values written back where nothing is stored): the
            # same cache as a scatter into a copy plus a select over the whole length, without the two copies
            scatter_index = index[:, None, :, None].expand(batch, heads, index.shape[1], dim)
            stored = plan.store.gather(1, index)[:, None, :, None]
            layer.keys.scatter_(2, scatter_index, torch.where(stored, k, layer.keys.gather(2, scatter_index)))
            layer.values.scatter_(2, scatter_index, torch.where(stored, v, layer.values.gather(2, scatter_index)))
        if plan.from_cache.any():
            cached = row_positions(plan.from_cache)
            if self.cache.rows is not None:  # a verification batch: every node reads its row's cache
                # one indexing copy of just the cached positions (not the rows' whole caches, then those)
                rows = self.cache.rows[:, None]
                cached_keys = layer.keys[rows, :, cached].transpose(1, 2)
                cached_values = layer.values[rows, :, cached].transpose(1, 2)
            else:
                gather_index = cached[:, None, :, None].expand(batch, heads, cached.shape[1], dim)
                cached_keys, cached_values = layer.keys.gather(2, gather_index), layer.values.gather(2, gather_index)
            k = torch.cat([k, cached_keys], dim=2)
            v = torch.cat([v, cached_values], dim=2)
            key_positions = torch.cat([index, cached], dim=1)
        return kernel(q, k, v, positions=positions, key_padding_mask=None, key_positions=key_positions)


class SubsetForwardHook(ModelHook):
    """On the model: asks the planner what to run, runs it, scatters logits back to full length."""

    _is_stateful = True

    def __init__(self, planner, cache: KVCache) -> None:
        super().__init__()
        self.planner = planner
        self.cache = cache

    def new_forward(
        self, module: nn.Module, input_ids, attention_mask=None, position_ids=None, decode_step=None, **extra
    ):
        forward = self.fn_ref.original_forward
        if decode_step is not None and decode_step.cache_rows is not None:
            return self.verify(forward, input_ids, attention_mask, position_ids, decode_step, extra)
        plan = self.planner.plan(input_ids, decode_step, self.cache) if decode_step is not None else None
        if plan is None:
            self.cache.clear()
            return forward(
                input_ids, attention_mask=attention_mask, position_ids=position_ids, decode_step=decode_step, **extra
            )
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError(f"{self.planner.name} does not support padded batches; use equal-length prompts")
        if position_ids is not None:
            default = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
            if not torch.equal(position_ids, default):
                raise ValueError(f"{self.planner.name} assigns positions itself; custom position_ids are not supported")
        if self.cache.valid is not None and self.cache.valid.shape != input_ids.shape:
            raise RuntimeError(f"{self.planner.name}: the cache shape does not match this sequence; planner bug")
        run_index = row_positions(plan.run)
        self.cache.plan, self.cache.run_index = plan, run_index
        try:
            out = run_subset(forward, input_ids, run_index, plan, decode_step, extra)
        except BaseException:
            self.cache.clear()
            raise
        finally:
            self.cache.plan = None
            self.cache.run_index = None
        if plan.reset_valid or self.cache.valid is None:
            self.cache.valid = plan.store.clone()
        else:
            self.cache.valid = self.cache.valid | plan.store
        self.planner.after_forward(input_ids, decode_step, plan)
        return out

    def verify(self, forward, input_ids, attention_mask, position_ids, step, extra):
        """A verification batch: each sequence continues row ``step.cache_rows[j]`` of the run and is
        served exactly as that row's next cached step would be (same positions run, same cached
        keys/values); nothing is stored, so the cache stays the one of the block start."""
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError(f"{self.planner.name} does not support padded batches; use equal-length prompts")
        if self.cache.valid is None:
            raise RuntimeError(f"{self.planner.name}: a verification forward before the block's first forward")
        rows = torch.tensor(step.cache_rows, device=input_ids.device)
        plan = self.planner.plan_verify(input_ids, step, self.cache.valid.index_select(0, rows))
        if plan is None:
            raise ValueError(
                f"{self.planner.name}: the verified sequences need different numbers of tokens run, which "
                "stepwise decoding with this cache would answer by refreshing it; compose without the cache"
            )
        run_index = row_positions(plan.run)
        self.cache.plan, self.cache.run_index, self.cache.rows = plan, run_index, rows
        try:
            return run_subset(forward, input_ids, run_index, plan, step, extra)
        finally:
            self.cache.plan = self.cache.run_index = self.cache.rows = None

    def reset_state(self, module: nn.Module) -> nn.Module:
        self.cache.clear()
        self.planner.reset()
        return module


def run_subset(forward, input_ids, run_index: torch.Tensor, plan: SubsetPlan, step, extra: dict) -> DiffusionLMOutput:
    """Run the planned tokens; logits at full length, or over the caller's ``logits_range`` (sequence
    positions): the body is asked only for the run positions inside it (zeros where a position of the
    range was not run, as at full length)."""
    extra = dict(extra)
    logits_range = extra.pop("logits_range", None)
    tokens = input_ids.gather(1, run_index)
    if logits_range is None:
        out = forward(tokens, position_ids=run_index, decode_step=step, **extra)
        return scatter_logits(out, input_ids, run_index, plan)
    lo, hi = (int(v) for v in logits_range)
    if not 0 <= lo < hi <= input_ids.shape[1]:
        raise ValueError(f"logits_range must satisfy 0 <= lo < hi <= {input_ids.shape[1]}, got {logits_range}")
    # run positions are sorted per row: the local slice covering [lo, hi) in every row
    start = int((run_index < lo).sum(dim=1).min())
    stop = max(int((run_index < hi).sum(dim=1).max()), start + 1)
    start = min(start, run_index.shape[1] - 1)
    stop = min(stop, run_index.shape[1])
    out = forward(tokens, position_ids=run_index, decode_step=step, logits_range=(start, stop), **extra)
    logits, ran = out.logits, run_index[:, start:stop]
    if ran.shape[1] != hi - lo or not bool((ran == torch.arange(lo, hi, device=ran.device)).all()):
        # not exactly the range in every row: place each run position's logits, drop those outside it
        target = torch.where((ran >= lo) & (ran < hi), ran - lo, hi - lo)
        placed = logits.new_zeros(logits.shape[0], hi - lo + 1, logits.shape[-1])
        placed.scatter_(1, target[..., None].expand(-1, -1, logits.shape[-1]), logits)
        logits = placed[:, : hi - lo]
    return DiffusionLMOutput(logits=logits, computed_tokens=run_index.numel())


def scatter_logits(out, input_ids: torch.Tensor, run_index: torch.Tensor, plan: SubsetPlan) -> DiffusionLMOutput:
    """Full-length logits from a subset forward (zeros where nothing ran)."""
    if plan.is_full:
        return DiffusionLMOutput(logits=out.logits, computed_tokens=run_index.numel())
    logits = out.logits.new_zeros(*input_ids.shape, out.logits.shape[-1])
    logits.scatter_(1, run_index[..., None].expand(-1, -1, logits.shape[-1]), out.logits)
    return DiffusionLMOutput(logits=logits, computed_tokens=run_index.numel())


def attention_modules(model: nn.Module) -> list[BidirectionalAttention]:
    found = [m for m in model.modules() if isinstance(m, BidirectionalAttention)]
    if not found:
        raise TypeError(f"{type(model).__name__} has no BidirectionalAttention modules (not a diffaccel.dllm model)")
    return found


def body_of(model: nn.Module) -> nn.Module:
    """The module computing logits from tokens: ``model.body`` for the diffaccel ports."""
    body = getattr(model, "body", None)
    if not isinstance(body, nn.Module):
        raise TypeError(f"{type(model).__name__} is not a diffaccel.dllm model (it has no `body` module)")
    return body


def attach_planner(model: nn.Module, planner) -> KVCache:
    """Install the two hooks executing ``planner``'s plans on ``model``; returns the shared cache.

    The subset hook sits on ``model.body`` so that a diffaccel engine hook on ``model`` itself
    still sees every call with the full sequence."""
    registry = HookRegistry.check_if_exists_or_initialize(body_of(model))
    if SUBSET_HOOK in registry.hooks:
        raise ValueError("a KV-cache planner is already attached to this model; detach it first")
    cache = KVCache()
    for module in attention_modules(model):
        HookRegistry.check_if_exists_or_initialize(module).register_hook(
            CachedAttentionHook(cache, module.layer_index), KV_HOOK
        )
    registry.register_hook(SubsetForwardHook(planner, cache), SUBSET_HOOK)
    return cache


def register_kernel_hook(module: BidirectionalAttention, hook: ModelHook, name: str) -> None:
    """Register an attention-kernel hook (SparseD) on ``module`` beneath its KV-cache hook, whichever was
    attached first: the cache hook assembles cached and fresh keys and hands them to the kernel, so the
    kernel must be the inner one."""
    registry = HookRegistry.check_if_exists_or_initialize(module)
    cache_hook = registry.get_hook(KV_HOOK)
    if cache_hook is not None:
        registry.remove_hook(KV_HOOK, recurse=False)
    registry.register_hook(hook, name)
    if cache_hook is not None:
        registry.register_hook(cache_hook, KV_HOOK)


def detach_planner(model: nn.Module) -> None:
    HookRegistry.check_if_exists_or_initialize(body_of(model)).remove_hook(SUBSET_HOOK, recurse=False)
    for module in attention_modules(model):
        HookRegistry.check_if_exists_or_initialize(module).remove_hook(KV_HOOK, recurse=False)


class BlockPlanner:
    """Base of the planners: run-id tracking, shifted-logit bookkeeping and common checks."""

    name = "kv-cache"

    def __init__(self) -> None:
        self.run_id: int | None = None
        self.previous: torch.Tensor | None = None
        self.full_forwards = 0
        self.cached_forwards = 0

    def reset(self) -> None:
        self.run_id = None
        self.previous = None

    def start(self, input_ids, step, cache: KVCache) -> None:
        """Forget everything when a new run starts (also after a run that raised halfway)."""
        if step.cfg:
            raise ValueError(f"{self.name} does not support classifier-free guidance (cfg_scale > 0)")
        if step.purpose != "step":
            raise ValueError(f"{self.name} cannot serve '{step.purpose}' forwards; compose it with stepwise decoding")
        new_run = self.run_id != step.run_id
        if new_run or (self.previous is not None and self.previous.shape != input_ids.shape):
            self.reset()  # a new run, or a longer window (LLaDA2Pipeline's next block): nothing is reusable
            cache.clear()
            self.run_id = step.run_id
            if new_run:
                self.full_forwards = self.cached_forwards = 0

    @staticmethod
    def needed_outputs(input_ids, step) -> torch.Tensor:
        """Positions whose output the sampler reads: masked ones (LLaDA) or their left neighbours
        (Dream, whose logit for position j comes from the output at j-1); with ``step.reads_block``
        every position of the current block as well."""
        read = input_ids == step.mask_id
        if step.reads_block:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            read = read | ((positions >= step.block_start) & (positions < step.block_end))
        if not step.shifted_logits:
            return read
        needed = torch.zeros_like(read)
        needed[:, :-1] = read[:, 1:]
        return needed

    def full(self, input_ids, store: torch.Tensor) -> SubsetPlan:
        self.full_forwards += 1
        everything = torch.ones_like(input_ids, dtype=torch.bool)
        return SubsetPlan(run=everything, from_cache=~everything, store=store, reset_valid=True)

    def subset(self, input_ids, from_cache: torch.Tensor, store_candidates: torch.Tensor) -> SubsetPlan | None:
        """A cached forward, or a full refresh when rows would need different token counts."""
        run = ~from_cache
        if not equal_row_counts(run) or not run.any():
            logger.debug("%s: rows need different token counts (or none); refreshing instead", self.name)
            return None
        self.cached_forwards += 1
        return SubsetPlan(run=run, from_cache=from_cache, store=store_candidates & run)

    def after_forward(self, input_ids, step, plan) -> None:
        self.previous = input_ids.clone()

    #: True when the plan of a step after the block's first forward is a function of the sequence and of
    #: the block-start cache only (Fast-dLLM's caches); then a verification batch can be served exactly.
    serves_verification = False

    def plan_verify(self, input_ids, step, valid: torch.Tensor) -> SubsetPlan | None:
        """The plan a later step of the block would get for each of ``input_ids``, storing nothing."""
        raise ValueError(f"{self.name} cannot serve verification forwards")
