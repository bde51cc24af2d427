"""diffusers' ``LLaDA2Pipeline`` with a diffaccel dLLM model: what the strategies need to attach to it.

``LLaDA2Pipeline`` (diffusers >= 0.42) refines the sequence block by block and calls
``model(block_x, attention_mask=..., position_ids=...)`` on the window ``x[:, :block_end]``; it
expects ``.logits`` ``[B, window, V]`` (logit i predicts token i). A diffaccel
:class:`~diffaccel.dllm.llada.LLaDAModelLM` has exactly that interface (the real LLaDA2 models are
remote-code MoE models with block-causal attention, which the dLLM strategies' attention hooks do not
know; the tiny bidirectional port stands in for the interface in tests and on CPU).

``diffaccel.wrap(pipe, "dkv-cache", ...)`` attaches to it like to any pipeline: the engine takes the
pipeline's ``model`` component and starts a run whenever the scheduler sets its timesteps. The window
grows by one block per block, so the dLLM strategies declare ``variable_input_shapes`` (their K/V
caches and SparseD patterns are rebuilt whenever the window changes).

The pipeline does not say where it is, so :class:`LLaDA2StepHook` infers the
:class:`~diffaccel.dllm.sampler.DecodeStep` the strategies read: the block is the last
``block_length`` positions of the window (``block_length`` and the steps per block come from the
scheduler's transfer schedule, set in ``set_timesteps`` at every call), a new run starts whenever
``set_timesteps`` made a new schedule, a new block whenever the window grows. The scheduler reads
the logits of the whole block (its editing rule may replace decoded tokens), so the step says
``reads_block`` and the K/V caches compute every block position; the hook asks the model for that
block's logits only (``logits_range``), which is all the pipeline reads. The hook also counts the forwards
and the tokens the model actually computed, for ``diffaccel.summary``.
Requirements: ``prompt_length + gen_length`` a multiple of ``block_length`` (no padded tail) and
equal-length prompts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from diffusers.hooks import HookRegistry, ModelHook

from .sampler import DecodeStep

STEP_HOOK = "diffaccel.dllm.llada2_step"
_run_ids = itertools.count(10**9)


@dataclass
class LLaDA2Run:
    """Where one ``LLaDA2Pipeline`` call is, and what its forwards computed."""

    schedule: object = None
    run_id: int = 0
    window: int = -1
    block_index: int = -1
    step_in_block: int = 0
    index: int = 0
    forwards: int = 0
    query_tokens: int = 0  # (row, position) tokens the transformer computed
    window_tokens: int = 0  # (row, position) tokens of the windows passed to the model
    in_flight_tokens: int = 0


class LLaDA2StepHook(ModelHook):
    """Adds the inferred ``decode_step`` to every model call made by a ``LLaDA2Pipeline``."""

    _is_stateful = True

    def __init__(self, pipe, mask_id: int) -> None:
        super().__init__()
        self.pipe = pipe
        self.mask_id = mask_id
        self.state = LLaDA2Run()

    def pre_forward(self, module, *args, **kwargs):
        input_ids = args[0] if args else kwargs["input_ids"]
        scheduler = self.pipe.scheduler
        schedule = getattr(scheduler, "_transfer_schedule", None)
        if schedule is None:
            raise RuntimeError("LLaDA2StepHook: the scheduler has no transfer schedule (set_timesteps not called)")
        s = self.state
        if schedule is not s.schedule:  # set_timesteps ran: a new pipeline call
            self.state = s = LLaDA2Run(schedule=schedule, run_id=next(_run_ids))
        window = input_ids.shape[1]
        if window != s.window:
            s.window, s.block_index, s.step_in_block = window, s.block_index + 1, 0
        block_length = int(schedule.sum())
        steps_per_block = int(schedule.numel())
        total = getattr(self.pipe, "_num_timesteps", None) or steps_per_block
        kwargs["decode_step"] = DecodeStep(
            run_id=s.run_id,
            index=s.index,
            total_steps=int(total),
            block_index=s.block_index,
            step_in_block=s.step_in_block,
            block_start=window - block_length,
            block_end=window,
            prompt_length=0,
            gen_length=block_length,
            mask_id=self.mask_id,
            reads_block=True,
        )
        kwargs["logits_range"] = (window - block_length, window)  # the pipeline reads the last block only
        s.step_in_block += 1
        s.index += 1
        s.forwards += 1
        s.window_tokens += input_ids.numel()
        s.in_flight_tokens = input_ids.numel()
        return args, kwargs

    def post_forward(self, module, output):
        computed = getattr(output, "computed_tokens", None)  # set when a K/V cache ran a subset
        self.state.query_tokens += self.state.in_flight_tokens if computed is None else computed
        return output

    def reset_state(self, module):
        self.state = LLaDA2Run()
        return module


def is_llada2_pipeline(obj) -> bool:
    try:
        from diffusers import LLaDA2Pipeline
    except ImportError:  # diffusers < 0.42
        return False
    return isinstance(obj, LLaDA2Pipeline)


def attach_step_hook(model, pipe) -> LLaDA2StepHook:
    """Register the step hook outermost on ``model`` (after every other hook of the strategy), so that
    the engine hook and the strategies' own hooks all see the inferred ``decode_step``."""
    mask_id = pipe.mask_token_id if getattr(pipe, "mask_token_id", None) is not None else model.config.mask_token_id
    registry = HookRegistry.check_if_exists_or_initialize(model)
    if STEP_HOOK in registry.hooks:
        raise ValueError("a dLLM strategy is already attached to this LLaDA2Pipeline's model; unwrap it first")
    hook = LLaDA2StepHook(pipe, mask_id)
    registry.register_hook(hook, STEP_HOOK)
    return hook


def detach_step_hook(model) -> None:
    HookRegistry.check_if_exists_or_initialize(model).remove_hook(STEP_HOOK, recurse=False)


def tiny_llada2_pipeline(model, block_length: int):
    """A ``LLaDA2Pipeline`` around a diffaccel LLaDA model (no tokenizer: pass ``input_ids``)."""
    from diffusers import BlockRefinementScheduler, LLaDA2Pipeline

    pipe = LLaDA2Pipeline(model=model, scheduler=BlockRefinementScheduler(block_length=block_length), tokenizer=None)
    pipe.mask_token_id = model.config.mask_token_id
    pipe.eos_token_id = None
    return pipe


__all__ = ["LLaDA2StepHook", "attach_step_hook", "detach_step_hook", "is_llada2_pipeline", "tiny_llada2_pipeline"]
