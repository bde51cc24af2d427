"""Ready-to-run generation with any diffaccel strategy: the shared logic of the scripts in ``pipelines/``.

    python pipelines/flux.py --strategy taylorseer:interval=5            # FLUX.1-dev on CUDA, bf16
    python pipelines/wan.py --tiny --strategy none                       # CPU, the wan-clips zoo model, baseline
    python -m diffaccel.generate ltx-video --strategy taylorseer --strategy taocache

Each run loads the pipeline (the real hub checkpoint, or with ``--tiny`` a CPU stand-in: the trained zoo model of the
same transformer class where one exists, else a tiny random pipeline of the same class), wraps it with the requested
strategies (``none``: not at all), generates with a seeded CPU generator, saves PNG / MP4, and
prints ``diffaccel.summary(pipe)`` and the wall time of the pipeline call. The model table is
:data:`diffaccel.generate.models.MODELS`.
"""

from .cli import GenerateError, GenerationResult, build_parser, main, parse_args, report, run
from .models import MODELS, Defaults, ModelSpec, TinySpec, get_model
from .output import OutputError

__all__ = [
    "MODELS",
    "Defaults",
    "GenerateError",
    "GenerationResult",
    "ModelSpec",
    "OutputError",
    "TinySpec",
    "build_parser",
    "get_model",
    "main",
    "parse_args",
    "report",
    "run",
]
