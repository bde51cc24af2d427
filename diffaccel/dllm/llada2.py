"""diffusers' ``LLaDA2Pipeline`` with a diffaccel dLLM model and the KV-cache / SparseD strategies.

``LLaDA2Pipeline`` (diffusers >= 0.42) refines the sequence block by block and calls
``model(block_x, attention_mask=..., position_ids=...)`` on the window ``x[:, :block_end]``; it
expects ``.logits`` ``[B, window, V]`` (logit i predicts token i). A diffaccel
:class:`~diffaccel.dllm.llada.LLaDAModelLM` has exactly that interface (the real LLaDA2 models are
remote-code MoE models with block-causal attention; the tiny bidirectional port stands in for the
interface in tests and on CPU).

The pipeline does not say where it is, so :class:`LLaDA2StepHook` infers the
:class:`~diffaccel.dllm.sampler.DecodeStep` the strategies read: the block is the last
``block_length`` positions of the window (``block_length`` and the steps per block come from the
scheduler's transfer schedule, set in ``set_timesteps`` at every call), a new run starts whenever
``set_timesteps`` made a new schedule, a new block whenever the window grows.

``attach_to_llada2(pipe, config)`` installs it with a strategy's hooks. It works directly on the
model rather than through ``diffaccel.wrap``, because the engine requires fixed input shapes within
a run and this pipeline's window grows by one block per block (see docs/dllm/README-section.md).
Requirements: ``prompt_length + gen_length`` a multiple of ``block_length`` (no padded tail) and
equal-length prompts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from diffusers.hooks import HookRegistry, ModelHook

from ..strategies.base import StrategyConfig
from .dkv_cache import DKVCacheConfig
from .dkv_cache import make_planner as make_dkv_planner
from .fast_dllm import FastDLLMConfig
from .fast_dllm import make_planner as make_fast_planner
from .kv_cache import attach_planner, detach_planner
from .sampler import DecodeStep
from .sparsed import SparseDConfig, attach_sparsed, detach_sparsed

STEP_HOOK = "diffaccel.dllm.llada2_step"
_run_ids = itertools.count(10**9)


@dataclass
class _Tracker:
    schedule: object = None
    run_id: int = 0
    window: int = -1
    block_index: int = -1
    step_in_block: int = 0
    index: int = 0
    calls: list = field(default_factory=list)


class LLaDA2StepHook(ModelHook):
    """Adds the inferred ``decode_step`` to every model call made by a ``LLaDA2Pipeline``."""

    def __init__(self, pipe, mask_id: int) -> None:
        super().__init__()
        self.pipe = pipe
        self.mask_id = mask_id
        self.state = _Tracker()

    def pre_forward(self, module, *args, **kwargs):
        input_ids = args[0] if args else kwargs["input_ids"]
        scheduler = self.pipe.scheduler
        schedule = getattr(scheduler, "_transfer_schedule", None)
        if schedule is None:
            raise RuntimeError("LLaDA2StepHook: the scheduler has no transfer schedule (set_timesteps not called)")
        s = self.state
        if schedule is not s.schedule:  # set_timesteps ran: a new pipeline call
            self.state = s = _Tracker(schedule=schedule, run_id=next(_run_ids))
        window = input_ids.shape[1]
        if window != s.window:
            s.window, s.block_index, s.step_in_block = window, s.block_index + 1, 0
        block_length = int(schedule.sum())
        steps_per_block = int(schedule.numel())
        total = getattr(self.pipe, "_num_timesteps", None) or steps_per_block
        kwargs["decode_step"] = DecodeStep(
            run_id=s.run_id, index=s.index, total_steps=int(total), block_index=s.block_index,
            step_in_block=s.step_in_block, block_start=window - block_length, block_end=window,
            prompt_length=0, gen_length=block_length, mask_id=self.mask_id,
        )
        s.step_in_block += 1
        s.index += 1
        return args, kwargs


@dataclass
class LLaDA2Attachment:
    config: StrategyConfig
    planner: object = None
    cache: object = None
    sparse_state: object = None


def attach_to_llada2(pipe, config: StrategyConfig) -> LLaDA2Attachment:
    """Attach ``dkv-cache``, ``fast-dllm`` (its cache; the pipeline keeps its own commit rule) or
    ``sparsed`` to a ``LLaDA2Pipeline`` whose ``model`` is a diffaccel dLLM model."""
    model = pipe.model
    if not hasattr(model, "body"):
        raise TypeError(f"attach_to_llada2 needs a diffaccel dLLM model, got {type(model).__name__}")
    mask_id = pipe.mask_token_id if getattr(pipe, "mask_token_id", None) is not None else model.config.mask_token_id
    registry = HookRegistry.check_if_exists_or_initialize(model)
    if STEP_HOOK in registry.hooks:
        raise ValueError("a strategy is already attached to this LLaDA2Pipeline; detach it first")
    attachment = LLaDA2Attachment(config=config)
    if isinstance(config, DKVCacheConfig):
        attachment.planner = make_dkv_planner(config)
    elif isinstance(config, FastDLLMConfig):
        attachment.planner = make_fast_planner(config)
    elif isinstance(config, SparseDConfig):
        attachment.sparse_state = attach_sparsed(model, config)
    else:
        raise ValueError(f"{config.strategy_name} cannot attach to LLaDA2Pipeline (its decoding loop is diffusers')")
    if attachment.planner is not None:
        attachment.cache = attach_planner(model, attachment.planner)
    registry.register_hook(LLaDA2StepHook(pipe, mask_id), STEP_HOOK)
    return attachment


def detach_from_llada2(pipe, attachment: LLaDA2Attachment) -> None:
    HookRegistry.check_if_exists_or_initialize(pipe.model).remove_hook(STEP_HOOK, recurse=False)
    if attachment.planner is not None:
        detach_planner(pipe.model)
    if attachment.sparse_state is not None:
        detach_sparsed(pipe.model)


def tiny_llada2_pipeline(model, block_length: int):
    """A ``LLaDA2Pipeline`` around a diffaccel LLaDA model (no tokenizer: pass ``input_ids``)."""
    from diffusers import BlockRefinementScheduler, LLaDA2Pipeline

    pipe = LLaDA2Pipeline(model=model, scheduler=BlockRefinementScheduler(block_length=block_length), tokenizer=None)
    pipe.mask_token_id = model.config.mask_token_id
    pipe.eos_token_id = None
    return pipe


__all__ = ["LLaDA2StepHook", "attach_to_llada2", "detach_from_llada2", "tiny_llada2_pipeline", "torch"]
