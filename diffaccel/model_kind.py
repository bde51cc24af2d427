"""Checks at the door of `wrap`: is this object something the requested strategies can accelerate?

Two mistakes otherwise pass `wrap` and fail at every call: a strategy for another kind of model (an
image-caching strategy on a diffusion language model, or a dLLM decoding strategy on an image pipeline),
and a module already compiled by `torch.compile`, whose compiled wrapper hides the module's classes and
sub-modules from the adapters.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from .core.errors import UnknownStrategyError, UnsupportedModelError


def is_diffusion_lm(obj) -> bool:
    """Diffusion-LM pipelines and models (diffaccel's LLaDA/Dream, diffusers' LLaDA2)."""
    from .dllm.llada2 import is_llada2_pipeline
    from .dllm.model_base import DiffusionLM

    if isinstance(obj, DiffusionLM) or is_llada2_pipeline(obj):
        return True
    return hasattr(obj, "block_policy") and hasattr(obj, "sampler")


def check_strategy_kinds(obj, entries: Iterable) -> None:
    """Refuse diffusion-LM strategies on other models and other strategies on diffusion LMs, naming the
    registered strategies that fit (the registry's `domain` of each strategy)."""
    from .strategies.registry import strategies

    dllm = is_diffusion_lm(obj)
    wrong = [e.name for e in entries if (e.domain == "dllm") != dllm]
    if wrong:
        kind, domain = ("a diffusion language model", "dllm") if dllm else ("an image/video denoiser", "denoiser")
        raise UnknownStrategyError(
            f"{', '.join(repr(n) for n in wrong)} cannot accelerate {type(obj).__name__} ({kind}); "
            f"strategies for it: {', '.join(strategies(domain))}"
        )


def check_not_compiled(obj) -> None:
    """`torch.compile(model)` returns an OptimizedModule wrapper: diffaccel must see the module itself."""
    modules = (
        [("", obj)]
        if isinstance(obj, nn.Module)
        else [(name, m) for name, m in (getattr(obj, "components", None) or {}).items() if isinstance(m, nn.Module)]
    )
    for name, module in modules:
        original = getattr(module, "_orig_mod", None)
        if isinstance(original, nn.Module):
            where = f"pipe.{name}" if name else "the model"
            raise UnsupportedModelError(
                f"{where} was compiled by torch.compile before wrap ({type(original).__name__} inside an "
                f"{type(module).__name__}). Wrap first and compile after: diffaccel.wrap(...), then torch.compile; "
                f"or wrap the original module: diffaccel.wrap({'compiled' if not name else where}._orig_mod, ...)."
            )
