"""diffaccel: training-free acceleration of diffusion models, as hooks on Hugging Face diffusers.

    pipe = diffaccel.wrap(pipe, "taylorseer")      # family preset; options override it
    image = pipe(prompt, num_inference_steps=50).images[0]
    print(diffaccel.summary(pipe))                 # what was computed, what was forecast
    diffaccel.unwrap(pipe)                         # exactly as before

Subpackages (`diffaccel.zoo`, `diffaccel.dllm`, `diffaccel.compare`, `diffaccel.hyca`, `diffaccel.taocache`, ...)
are imported on first attribute access, so `import diffaccel` stays light.
"""

import importlib
import importlib.util

from .adapters.registry import Adapter, StackSpec, UnitSpec, register_adapter, supported_classes
from .api import cache_context, engines, new_run, summary, unwrap, wrap
from .core.errors import (
    AlreadyWrappedError,
    DiffaccelError,
    NotWrappedError,
    RunStateError,
    UnknownStrategyError,
    UnsupportedFamilyError,
    UnsupportedModelError,
)
from .core.summary import Summary
from .strategies.bac import BacConfig
from .strategies.hyca import HyCaConfig
from .strategies.registry import (
    StrategyRequest,
    parse_strategy_spec,
    register_domain_module,
    register_strategy,
    strategies,
)
from .strategies.taocache import TaoCacheConfig
from .strategies.taylorseer import TaylorSeerConfig
from .tune import TuneResult, tune

__version__ = "0.1.0"

# Domains beyond image/video denoisers register their strategies when imported; the registry imports
# them the first time it is read.
register_domain_module("diffaccel.dllm.strategies")


def __getattr__(name: str):
    """`diffaccel.zoo`, `diffaccel.dllm`, ...: import a subpackage or submodule on first access."""
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Adapter",
    "AlreadyWrappedError",
    "BacConfig",
    "DiffaccelError",
    "HyCaConfig",
    "NotWrappedError",
    "RunStateError",
    "StackSpec",
    "StrategyRequest",
    "Summary",
    "TaoCacheConfig",
    "TaylorSeerConfig",
    "UnitSpec",
    "UnknownStrategyError",
    "UnsupportedFamilyError",
    "UnsupportedModelError",
    "cache_context",
    "engines",
    "new_run",
    "parse_strategy_spec",
    "register_adapter",
    "register_strategy",
    "strategies",
    "summary",
    "supported_classes",
    "TuneResult",
    "tune",
    "unwrap",
    "wrap",
]
