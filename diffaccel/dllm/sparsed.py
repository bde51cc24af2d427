"""SparseD: head-specific sparse attention computed once and reused (arXiv 2509.24014; INV-WZQ/SparseD).

Schedule over the run's reference steps ``now = 0 .. T-1`` with ``t* = floor(T * skip) + 1``:
dense attention while ``now <= t*``; at ``now == t*`` each layer builds its block pattern from that
step's post-RoPE queries and keys (:func:`~diffaccel.dllm.sparse_patterns.build_sparse_pattern`);
for ``now > t*`` attention runs as PyTorch FlexAttention with that block mask (``torch.compile``'d,
``dynamic=False``; CPU works through inductor's C++ backend). ``skip >= 1`` never leaves dense.

[ours] A pattern belongs to one sequence shape. When the shape changes after ``t*`` (diffusers'
``LLaDA2Pipeline`` grows its window by one block per block; a bare model may get another batch), the
first call at the new shape runs dense and builds the layer's pattern from its queries and keys, as
at ``t*``; the official code has no growing windows.

Where FlexAttention is unavailable (old torch) a warning says so once and the layer falls back to dense
attention, so outputs stay correct and only the speed-up is lost; ``compile=True`` on a CPU without a C++
compiler (inductor's CPU backend needs one) raises an error naming ``compile=False`` and our kernels.
Scores for the pattern use ``1/sqrt(n_heads)`` for LLaDA and ``1/sqrt(head_dim)`` for Dream, as the
official code does (``score_scale="official"``); ``score_scale="head_dim"`` is ours for both.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers.hooks import HookRegistry, ModelHook
from torch import nn

from ..strategies.base import StrategyConfig
from .attention import dense_attention, repeat_kv
from .kv_cache import attention_modules, register_kernel_hook
from .sparse_patterns import (
    build_sparse_pattern,
    dense_mask_from_pattern,
    gathered_block_attention,
    kept_block_groups,
    kept_block_index,
    tiled_block_attention,
)

logger = logging.getLogger(__name__)

STEP_HOOK = "diffaccel.dllm.sparsed_step"
ATTN_HOOK = "diffaccel.dllm.sparsed_attention"
KERNELS = ("flex", "gather", "tiles", "auto")
#: our CPU kernels: (the kept blocks in the kernel's form, built once per pattern; the attention call)
CPU_KERNELS = {
    "gather": (kept_block_index, gathered_block_attention),
    "tiles": (kept_block_groups, tiled_block_attention),
}


@dataclass
class SparseDConfig(StrategyConfig):
    """Options of SparseD.

    Attributes:
        skip: fraction of steps with dense attention (official 0.2).
        select: fraction of key blocks kept per query block (official 0.3 long context, 0.5 short).
        block_size: pattern block size in tokens (official 128 long context, 32 short; <= 16 on toys).
        score_scale: ``"official"`` or ``"head_dim"`` (see module docstring).
        compile: compile FlexAttention (``False`` runs it eagerly: slow, for tests).
        kernel: ``"flex"`` (the official FlexAttention block mask) or ``"gather"`` [ours, for CPUs]: each
            query block's kept key blocks gathered into a dense tile for PyTorch's SDPA, work in
            proportion to the kept fraction, nothing compiled; the block indices are built once per pattern;
            or ``"tiles"`` [ours]: one SDPA tile per query block holding exactly its kept key blocks, copied
            as contiguous rows of a key-block table (no padding, no mask; :func:`tiled_block_attention`);
            or ``"auto"`` [ours]: ``gather`` for sequences shorter than ``auto_tiles_from`` keys, ``tiles``
            from there on (FlexAttention is never picked: compiled, it skips no work on a CPU). Measured on a
            CPU, one thread, random-weight model (``eval/dllm_long_context.py``, process CPU time per step):
            tiles 1.10x / 1.25x / 1.50x / 1.74x / 1.84x of dense at 1k / 2k / 4k / 8k / 16k keys, gather
            1.00x / 1.10x / 1.23x / 1.23x / 1.25x, FlexAttention about 1.0x; at 547 keys tiles is 0.68x.
        auto_tiles_from: with ``kernel="auto"``: the sequence length (keys) from which the tiles kernel is used.
    """

    strategy_name: ClassVar[str] = "sparsed"
    tag_fields: ClassVar[tuple[str, ...]] = ()

    skip: float = 0.2
    select: float = 0.3
    block_size: int = 128
    score_scale: str = "official"
    compile: bool = True
    kernel: str = "flex"
    auto_tiles_from: int = 1024

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not 0.0 <= self.skip <= 1.0:
            raise ValueError(f"skip is a fraction of the steps, in [0, 1], got {self.skip}")
        if not 0.0 < self.select <= 1.0:
            raise ValueError(f"select must be in (0, 1], got {self.select}")
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {self.block_size!r}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(map(repr, KERNELS))}, got {self.kernel!r}")
        if not isinstance(self.auto_tiles_from, int) or self.auto_tiles_from < 1:
            raise ValueError(f"auto_tiles_from must be a positive number of tokens, got {self.auto_tiles_from!r}")
        if self.score_scale not in ("official", "head_dim"):
            raise ValueError(f"score_scale must be 'official' or 'head_dim', got {self.score_scale!r}")

    def kernel_for(self, length: int) -> str:
        """The kernel that runs a sparse step over ``length`` keys: ``kernel``, or the choice of ``"auto"``."""
        if self.kernel != "auto":
            return self.kernel
        return "tiles" if length >= self.auto_tiles_from else "gather"

    def pattern_step(self, total_steps: int) -> int:
        """``t*``: the step whose queries/keys define the pattern; sparse attention after it."""
        return math.floor(total_steps * self.skip) + 1


_FLEX = {}


def flex_attention_fn(compiled: bool):
    """FlexAttention (compiled or eager), or ``None`` with a one-time warning when unavailable."""
    if compiled in _FLEX:
        return _FLEX[compiled]
    try:
        from torch.nn.attention.flex_attention import flex_attention

        fn = torch.compile(flex_attention, dynamic=False) if compiled else flex_attention
    except Exception as exc:  # pragma: no cover - depends on the torch build
        logger.warning(
            "SparseD: FlexAttention is unavailable (%s); falling back to dense attention, "
            "outputs stay correct but nothing is saved",
            exc,
        )
        fn = None
    _FLEX[compiled] = fn
    return fn


def require_cpu_compiler() -> None:
    """Raise a clear error when ``torch.compile`` cannot build FlexAttention for the CPU: inductor's CPU backend
    compiles C++, and without a compiler the first sparse step would fail deep inside inductor."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as exc:
        raise RuntimeError(
            f"sparsed: compile=True needs a C++ compiler for torch.compile's CPU backend, none found ({exc}); "
            "install one (gcc), or pass compile=False (eager FlexAttention, slow) or kernel='tiles' / 'gather' "
            "(our CPU kernels, nothing compiled)"
        ) from exc


def make_block_mask(pattern: torch.Tensor, lq: int, lk: int, block_size: int):
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, q_idx, kv_idx):
        return pattern[b, h, q_idx // block_size, kv_idx // block_size]

    batch, heads = pattern.shape[:2]
    return create_block_mask(mask_mod, batch, heads, lq, lk, device=pattern.device, BLOCK_SIZE=block_size)


@dataclass
class SparseDState:
    """Per-run state: the step in flight and each layer's pattern / block mask."""

    step: object = None
    run_id: int | None = None
    patterns: dict[int, torch.Tensor] = field(default_factory=dict)
    pattern_shapes: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # (batch, Lq, Lk)
    block_masks: dict[int, object] = field(default_factory=dict)
    dense_calls: int = 0
    sparse_calls: int = 0
    fallback_calls: int = 0
    masked_calls: int = 0  # cached forwards under a KV cache: the pattern as a mask on the dense kernel
    attention_pairs: int = 0  # (query, key) pairs of every attention call, summed over batch and heads
    pairs_excluded: int = 0  # pairs the pattern excluded
    pairs_skipped: int = 0  # of those, pairs whose work the kernel skipped (FlexAttention's sparse blocks)

    def reset(self) -> None:
        self.step, self.run_id = None, None
        self.patterns.clear()
        self.pattern_shapes.clear()
        self.block_masks.clear()
        self.dense_calls = self.sparse_calls = self.fallback_calls = self.masked_calls = 0
        self.attention_pairs = self.pairs_excluded = self.pairs_skipped = 0

    def count(self, q: torch.Tensor, k: torch.Tensor, kept: int | None, skipped: bool = False) -> None:
        """Account one attention call of ``q`` rows against ``k`` keys; ``kept`` pairs (all when ``None``)."""
        total = q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2]
        excluded = 0 if kept is None else total - kept
        self.attention_pairs += total
        self.pairs_excluded += excluded
        self.pairs_skipped += excluded if skipped else 0

    def kept_fraction(self) -> float | None:
        if not self.patterns:
            return None
        return sum(float(p.float().mean()) for p in self.patterns.values()) / len(self.patterns)


class SparseDStepHook(ModelHook):
    """On the model: publishes the sampler's step to the attention hooks, resets on a new run."""

    _is_stateful = True

    def __init__(self, state: SparseDState) -> None:
        super().__init__()
        self.state = state

    def pre_forward(self, module, *args, **kwargs):
        step = kwargs.get("decode_step")
        if step is not None and step.run_id != self.state.run_id:
            self.state.reset()
            self.state.run_id = step.run_id
        self.state.step = step
        return args, kwargs

    def post_forward(self, module, output):
        self.state.step = None
        return output

    def reset_state(self, module):
        self.state.reset()
        return module


class SparseDAttentionHook(ModelHook):
    """On one attention module: dense, pattern-building or FlexAttention, per the schedule.

    [ours] Beneath a KV cache (dKV-Cache, Fast-dLLM's caches) the cache hook assembles the keys of every
    position (fresh ones first, then cached ones, with ``key_positions``) and calls this kernel:
    forwards over the whole sequence are SparseD's own; a cached forward, which runs only some query
    rows, applies the same kept blocks to those rows (each query row keeps the key blocks of its
    query block) as a boolean mask on the dense kernel, which excludes the pairs without skipping
    their work on CPU. A pattern is built only from a forward over the whole sequence: when ``t*``
    falls on a cached forward, attention stays dense until the cache's next full forward builds it.
    """

    def __init__(self, config: SparseDConfig, state: SparseDState, layer_index: int, score_scale: float) -> None:
        super().__init__()
        self.config = config
        self.state = state
        self.layer_index = layer_index
        self.score_scale = score_scale

    def new_forward(self, module: nn.Module, q, k, v, positions=None, key_padding_mask=None, key_positions=None):
        step = self.state.step

        def dense():
            self.state.count(q, k, kept=None)
            return self.fn_ref.original_forward(
                q, k, v, positions=positions, key_padding_mask=key_padding_mask, key_positions=key_positions
            )

        if step is None or step.purpose != "step":
            return dense()
        if key_padding_mask is not None and not bool(key_padding_mask.all()):
            raise ValueError("sparsed does not support padded batches; use equal-length prompts")
        t_star = self.config.pattern_step(step.total_steps)
        if q.shape[2] != k.shape[2]:
            if key_positions is None or positions is None:
                return dense()
            return self.cached_rows(q, k, v, positions, key_positions, step, t_star, dense)
        if step.index < t_star:
            self.state.dense_calls += 1
            return dense()
        shape = (q.shape[0], q.shape[2], k.shape[2])
        if step.index == t_star or self.state.pattern_shapes.get(self.layer_index) != shape:
            n_rep = q.shape[1] // k.shape[1]
            self.state.patterns[self.layer_index] = build_sparse_pattern(
                q,
                repeat_kv(k, n_rep),
                gen_length=step.gen_length,
                block_size=self.config.block_size,
                select=self.config.select,
                scale=self.score_scale,
            )
            self.state.pattern_shapes[self.layer_index] = shape
            self.state.block_masks.pop(self.layer_index, None)
            self.state.dense_calls += 1
            return dense()
        return self.sparse(q, k, v)

    def cached_rows(self, q, k, v, positions, key_positions, step, t_star, dense):
        """A cached forward: the kept blocks of each query row's block, as a mask over the assembled keys."""
        full_shape = (q.shape[0], k.shape[2], k.shape[2])
        pattern = self.state.patterns.get(self.layer_index)
        if step.index <= t_star or pattern is None or self.state.pattern_shapes.get(self.layer_index) != full_shape:
            self.state.dense_calls += 1
            return dense()
        mask = rows_mask(pattern, positions, key_positions, self.config.block_size)
        self.state.masked_calls += 1
        self.state.count(q, k, kept=int(mask.sum()))
        n_rep = q.shape[1] // k.shape[1]
        return F.scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), attn_mask=mask)

    def sparse(self, q, k, v):
        pattern = self.state.patterns[self.layer_index]
        kernel = self.config.kernel_for(k.shape[2])
        if kernel in CPU_KERNELS:
            index_of, attend = CPU_KERNELS[kernel]
            built = self.state.block_masks.get(self.layer_index)
            if built is None:  # the kept blocks in the kernel's form, once per pattern
                built = self.state.block_masks[self.layer_index] = index_of(pattern)
            self.state.sparse_calls += 1
            bs = self.config.block_size
            self.state.count(q, k, kept=kept_pairs(pattern, q.shape[2], k.shape[2], bs), skipped=True)
            n_rep = q.shape[1] // k.shape[1]
            return attend(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), built, bs)
        flex = flex_attention_fn(self.config.compile)
        if flex is None:
            self.state.fallback_calls += 1
            self.state.count(q, k, kept=None)
            return dense_attention(q, k, v)
        block_mask = self.state.block_masks.get(self.layer_index)
        if block_mask is None:  # once per pattern: the compiler check and the block mask
            if self.config.compile and q.device.type == "cpu":
                require_cpu_compiler()
            block_mask = make_block_mask(pattern, q.shape[2], k.shape[2], self.config.block_size)
            self.state.block_masks[self.layer_index] = block_mask
        self.state.sparse_calls += 1
        self.state.count(q, k, kept=kept_pairs(pattern, q.shape[2], k.shape[2], self.config.block_size), skipped=True)
        n_rep = q.shape[1] // k.shape[1]
        return flex(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), block_mask=block_mask)


def rows_mask(pattern: torch.Tensor, positions: torch.Tensor, key_positions: torch.Tensor, block_size: int):
    """``[B, H, Lq, Lk]`` bool: query row at ``positions`` may attend to the key at ``key_positions``
    iff the pattern keeps (query block, key block)."""
    batch, heads, _, nk = pattern.shape
    q_blocks = (positions // block_size)[:, None, :, None].expand(batch, heads, positions.shape[1], nk)
    rows = pattern.gather(2, q_blocks)
    k_blocks = (key_positions // block_size)[:, None, None, :].expand(batch, heads, positions.shape[1], -1)
    return rows.gather(3, k_blocks)


def kept_pairs(pattern: torch.Tensor, lq: int, lk: int, block_size: int) -> int:
    """(query, key) pairs per batch row and head summed over all, that the pattern keeps (partial last blocks counted exactly)."""

    def widths(length, count):
        w = torch.full((count,), float(block_size))
        w[-1] = length - (count - 1) * block_size
        return w

    nq, nk = pattern.shape[-2:]
    weight = widths(lq, nq)[:, None] * widths(lk, nk)[None, :]
    return int((pattern.float().cpu() * weight).sum())


def official_score_scale(model: nn.Module, config: SparseDConfig) -> float:
    mcfg = model.config
    head_dim = mcfg.head_dim
    if config.score_scale == "official" and getattr(mcfg, "model_type", "") == "llada":
        return 1.0 / math.sqrt(mcfg.n_heads)  # the official LLaDA code's quirk (INV-WZQ/SparseD `modeling_llada.py`)
    return 1.0 / math.sqrt(head_dim)


def attach_sparsed(model: nn.Module, config: SparseDConfig) -> SparseDState:
    registry = HookRegistry.check_if_exists_or_initialize(model)
    if STEP_HOOK in registry.hooks:
        raise ValueError("sparsed is already attached to this model")
    modules = attention_modules(model)  # a TypeError for models that are not diffaccel dLLM ports
    state = SparseDState()
    scale = official_score_scale(model, config)
    for module in modules:
        register_kernel_hook(module, SparseDAttentionHook(config, state, module.layer_index, scale), ATTN_HOOK)
        module.needs_every_query = True  # patterns are built from every query row of a forward
    registry.register_hook(SparseDStepHook(state), STEP_HOOK)
    return state


def detach_sparsed(model: nn.Module) -> None:
    HookRegistry.check_if_exists_or_initialize(model).remove_hook(STEP_HOOK, recurse=False)
    for module in attention_modules(model):
        HookRegistry.check_if_exists_or_initialize(module).remove_hook(ATTN_HOOK, recurse=False)
        module.needs_every_query = False


__all__ = ["SparseDConfig", "SparseDState", "attach_sparsed", "detach_sparsed", "dense_mask_from_pattern"]
