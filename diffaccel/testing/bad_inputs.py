"""A catalogue of user mistakes, each with the clear error it must get at the door.

Used by the tests (every entry raises the named error, and a failed `wrap` leaves nothing attached) and by
`eval/fuzz.py` (which also varies them). An entry is (label, action, pattern): `action(objects)` must raise
a `DiffaccelError`, `ValueError` or `TypeError` whose message matches `pattern`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import diffaccel

from ..core.errors import DiffaccelError

CLEAR_ERRORS = (DiffaccelError, ValueError, TypeError)


@dataclass
class BadInputObjects:
    """What the mistakes are made on: a tiny bare FLUX model and a tiny diffusion-LM pipeline."""

    model: Any
    dllm: Any


def _wrap(attr: str, *args, **kwargs) -> Callable[[BadInputObjects], Any]:
    return lambda objs: diffaccel.wrap(getattr(objs, attr), *args, **kwargs)


def _dllm_call(*args, **kwargs) -> Callable[[BadInputObjects], Any]:
    return lambda objs: objs.dllm(*args, **kwargs)


def _compiled(objs: BadInputObjects):
    return diffaccel.wrap(torch.compile(objs.model), "taylorseer")


def _twice(objs: BadInputObjects):
    diffaccel.wrap(objs.model, "taylorseer")
    try:
        diffaccel.wrap(objs.model, "taylorseer")
    finally:
        diffaccel.unwrap(objs.model)


def _empty_context(objs: BadInputObjects):
    diffaccel.wrap(objs.model, "taylorseer")
    try:
        with diffaccel.cache_context(objs.model, ""):
            pass
    finally:
        diffaccel.unwrap(objs.model)


_GEN = dict(gen_length=8, steps=8, block_length=8)

BAD_INPUTS: list[tuple[str, Callable[[BadInputObjects], Any], str]] = [
    ("unknown strategy", _wrap("model", "taylorsear"), r"Unknown strategy 'taylorsear'. Available: .*taylorseer"),
    ("unknown option", _wrap("model", "taylorseer", intervl=2), r"Unknown option\(s\) \['intervl'\].*'interval'"),
    ("stray colon", _wrap("model", "taylorseer:interval=3:order=1"), r"stray ':order=1'.*interval=3,order=1"),
    ("option without value", _wrap("model", "taylorseer:interval"), r"not of the form key=value"),
    ("interval 0", _wrap("model", "taylorseer", interval=0), r"interval must be >= 1"),
    ("interval as text", _wrap("model", "taylorseer", interval="3"), r"'interval' must be an int, got '3'"),
    ("interval fractional", _wrap("model", "taylorseer", interval=2.5), r"'interval' must be an int"),
    ("interval bool", _wrap("model", "taylorseer", interval=True), r"'interval' must be an int"),
    ("order negative", _wrap("model", "taylorseer", order=-1), r"order must be >= 0"),
    ("warmup 0", _wrap("model", "taylorseer", warmup=0), r"warmup must be >= 1"),
    ("factor dtype", _wrap("model", "taylorseer", factor_dtype="int8"), r"factor_dtype must be one of .*float32"),
    ("granularity", _wrap("model", "taylorseer", granularity="layers"), r"granularity must be one of .*stack"),
    ("hyca empty solvers", _wrap("model", "hyca:solvers="), r"solvers is empty.*tf1"),
    ("hyca unknown solver", _wrap("model", "hyca", solvers="tf1,nope"), r"unknown HyCa solver 'nope'.*reuse"),
    ("hyca clusters 0", _wrap("model", "hyca", num_clusters=0), r"num_clusters must be >= 1"),
    ("hyca short probe", _wrap("model", "hyca", probe_steps=2), r"probe_steps must be >= 4"),
    ("hyca selection", _wrap("model", "hyca", selection="best"), r"selection must be one of .*accumulated"),
    ("taocache start_frac", _wrap("model", "taocache", start_frac=2.0), r"start_frac must be in \[0, 1\]"),
    ("taocache max_skips", _wrap("model", "taocache", max_skips=-1), r"max_skips must be an int >= 0"),
    ("taocache threshold text", _wrap("model", "taocache", error_threshold="x"), r"'error_threshold' must be a number"),
    ("taocache max_ratio", _wrap("model", "taocache", max_ratio=-0.5), r"max_ratio must be >= 0"),
    ("bac num_updates 0", _wrap("model", "bac", num_updates=0), r"num_updates and interval must be >= 1"),
    ("bac num_updates fractional", _wrap("model", "bac", num_updates=2.5), r"'num_updates' must be an int"),
    ("bac metric", _wrap("model", "bac", metric="cos"), r"metric must be one of .*cosine"),
    ("bac mode", _wrap("model", "bac", mode="fast"), r"mode must be one of .*uniform"),
    ("bac force_last text", _wrap("model", "bac", force_last="yes"), r"'force_last' must be true or false"),
    ("bac schedule type", _wrap("model", "bac", schedule=42), r"schedule must be a BacSchedule or the path"),
    ("bac schedule missing", _wrap("model", "bac", schedule="/nonexistent/bac.json"), r"does not exist.*calibrate"),
    ("schedule name", _wrap("model", "taylorseer:schedule=nope"), r"schedule must be 'uniform', .*'adaptive'"),
    (
        "schedule file missing",
        _wrap("model", "taylorseer", schedule="/nonexistent/schedule.json"),
        r"does not exist.*schedules.calibrate",
    ),
    ("schedule threshold text", _wrap("model", "taylorseer:schedule=adaptive,threshold=x"), r"must be a number"),
    ("adaptive at model granularity", _wrap("model", "taylorseer:schedule=adaptive,granularity=model"), r"modules"),
    ("dLLM strategy on an image model", _wrap("model", "ssd"), r"'ssd' cannot accelerate .*taylorseer"),
    ("image strategy on a dLLM", _wrap("dllm", "taocache"), r"'taocache' cannot accelerate .*dkv-cache"),
    ("taylorseer on a dLLM", _wrap("dllm", "taylorseer"), r"'taylorseer' cannot accelerate .*ssd"),
    ("ssd with dkv-cache", _wrap("dllm", ["ssd", "dkv-cache"]), r"ssd cannot be composed with dkv-cache"),
    ("fast-dllm threshold 0", _wrap("dllm", "fast-dllm", threshold=0), r"threshold is a confidence in \(0, 1\]"),
    ("fast-dllm threshold -1", _wrap("dllm", "fast-dllm", threshold=-1), r"threshold is a confidence in \(0, 1\]"),
    ("fast-dllm threshold 1.5", _wrap("dllm", "fast-dllm", threshold=1.5), r"threshold is a confidence in \(0, 1\]"),
    ("fast-dllm cache", _wrap("dllm", "fast-dllm", cache="full"), r"cache must be one of .*prefix"),
    ("dkv refresh 0", _wrap("dllm", "dkv-cache", refresh_interval=0), r"refresh_interval must be a positive"),
    ("dkv variant", _wrap("dllm", "dkv-cache", variant="lazy"), r"variant must be 'decode' or 'greedy'"),
    ("ssd negative draft", _wrap("dllm", "ssd", draft_length=-1), r"draft_length must be a non-negative"),
    ("ssd draft as text", _wrap("dllm", "ssd", draft_length="4"), r"'draft_length' must be an int"),
    ("sparsed select 0", _wrap("dllm", "sparsed", select=0.0), r"select must be in \(0, 1\]"),
    ("sparsed skip 2", _wrap("dllm", "sparsed", skip=2.0), r"skip is a fraction"),
    ("no strategy", _wrap("model", []), r"at least one strategy"),
    (
        "options with a composition",
        _wrap("model", ["taylorseer", "taocache"], interval=2),
        r"options apply to a single",
    ),
    ("not a model", lambda objs: diffaccel.wrap(42, "taylorseer"), r"expects a diffusers pipeline or an nn.Module"),
    ("compiled before wrap", _compiled, r"compiled by torch.compile before wrap.*_orig_mod"),
    ("wrapped twice", _twice, r"already wrapped"),
    ("unwrap unwrapped", lambda objs: diffaccel.unwrap(objs.model), r"not wrapped"),
    ("empty context name", _empty_context, r"non-empty string"),
    ("dLLM empty prompt list", _dllm_call([], **_GEN), r"empty prompt list"),
    ("dLLM empty prompt tensor", _dllm_call(torch.zeros(1, 0, dtype=torch.long), **_GEN), r"empty prompt"),
    (
        "dLLM prompt too long",
        _dllm_call(torch.full((1, 5000), 3, dtype=torch.long), **_GEN),
        r"exceeds the model's maximum length",
    ),
    (
        "dLLM prompt and ids",
        _dllm_call("1+1=", input_ids=torch.ones(1, 3, dtype=torch.long), **_GEN),
        r"exactly one of",
    ),
    ("dLLM unknown sampling option", _dllm_call("1+1=", gen_lenght=8), r"unknown sampling option"),
]


def make_objects() -> BadInputObjects:
    from ..dllm.zoo import load_llada_addition
    from .tiny_models import build_tiny

    return BadInputObjects(model=build_tiny("FluxTransformer2DModel"), dllm=load_llada_addition())
