"""diffaccel: training-free acceleration of diffusion models, as hooks on Hugging Face diffusers.

    pipe = diffaccel.wrap(pipe, "taylorseer")      # family preset; options override it
    image = pipe(prompt, num_inference_steps=50).images[0]
    print(diffaccel.summary(pipe))                 # what was computed, what was forecast
    diffaccel.unwrap(pipe)                         # exactly as before
"""

from .adapters.registry import Adapter, StackSpec, UnitSpec, register_adapter, supported_classes
from .api import cache_context, engines, new_run, summary, unwrap, wrap
from .core.errors import (
    AlreadyWrappedError,
    DiffaccelError,
    NotWrappedError,
    RunStateError,
    UnknownStrategyError,
    UnsupportedModelError,
)
from .core.summary import Summary
from .strategies.registry import parse_strategy_spec, register_strategy, strategies
from .strategies.hyca import HyCaConfig
from .strategies.taylorseer import TaylorSeerConfig
from . import bac, hyca, taocache  # noqa: E402  (diffaccel.hyca.profile, diffaccel.taocache.calibrate)
from .strategies.taocache import TaoCacheConfig
from .strategies.bac import BacConfig

__version__ = "0.1.0"

__all__ = [
    "Adapter", "AlreadyWrappedError", "BacConfig", "bac", "HyCaConfig", "hyca", "TaoCacheConfig", "taocache", "DiffaccelError", "NotWrappedError", "RunStateError", "Summary",
    "StackSpec", "TaylorSeerConfig", "UnitSpec", "UnknownStrategyError", "UnsupportedModelError", "cache_context", "engines",
    "new_run", "parse_strategy_spec", "register_adapter", "register_strategy", "strategies", "summary",
    "supported_classes", "unwrap", "wrap",
]
