"""Fuzz benchmark: thousands of random call sequences and bad inputs, with their counts.

Two parts, run until `--minutes` have passed (alternating):

* sequences: random operations on a wrapped tiny FLUX model (`diffaccel.testing.sequences`): runs of
  2-7 steps at batch 1-2 and 2x2/3x3/4x4 latent tokens, guidance as one doubled batch or two named branches,
  with or without `diffaccel.new_run`, one run in five raising at a random step (inside the denoiser or
  between steps), and re-wraps among seven strategy settings (TaylorSeer at three granularities, TaoCache,
  their composition, HyCa with a profile, unwrapped). Every finished run is compared bit for bit with the
  same run on a freshly wrapped copy; a mismatch is recorded with its sequence.
* pipeline sequences: the same property on real tiny diffusers pipelines
  (`diffaccel.testing.pipeline_sequences`): FLUX (guidance-distilled, or true CFG as two named calls),
  Stable Diffusion's UNet (CFG as one doubled batch, or none) and Wan (CFG as two calls, or none), each as
  two pipelines sharing one denoiser with either wrapped and runs through either; 2-5 steps, 1-2 images,
  three resolutions, CFG on or off, one run in five raising at a random denoiser call or from the step
  callback, re-wraps among nine strategy settings (TaylorSeer uniform / stack / adaptive / guidance reuse,
  TaoCache, a composition, BAC uniform, HyCa with a profile, unwrapped), and in one sequence in
  `--compile-every` a `torch.compile` of the wrapped denoiser in place (backend "eager", so runs stay
  comparable bit for bit; slow on CPU). Sequences alternate between the bare model and the three pipelines.
* bad inputs: the catalogue of `diffaccel.testing.bad_inputs`, then random mutations: a random option
  (or a misspelled one) of a random strategy (TaylorSeer, HyCa, TaoCache, BAC, and the four dLLM ones) set to a
  random value of a random type, on the image model
  or the diffusion-LM pipeline. Outcomes: refused at wrap with a clear error (a DiffaccelError, ValueError
  or TypeError), refused with another exception (unclear), accepted and then a short generation worked
  (the value was valid after all: not counted as bad), or accepted and the generation failed (not caught
  at the door).

    OMP_NUM_THREADS=1 python eval/fuzz.py --minutes 25 --seed 2 --out eval/results/fuzz-seed2.json
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
import traceback
from pathlib import Path

import torch

import diffaccel
from diffaccel.core.atomic import atomic_write_text
from diffaccel.strategies.registry import get_entry
from diffaccel.testing.bad_inputs import BAD_INPUTS, CLEAR_ERRORS, make_objects
from diffaccel.testing.pipeline_sequences import (
    FAMILIES,
    Compile,
    PipelineSequenceChecker,
    PipeRewrap,
    PipeRun,
)
from diffaccel.testing.pipeline_sequences import STRATEGIES as PIPE_STRATEGIES
from diffaccel.testing.sequences import STRATEGIES, Rewrap, Run, SequenceChecker, denoise


def random_run(rng: random.Random) -> Run:
    steps = rng.randint(2, 7)
    fail_at = rng.randrange(steps) if rng.random() < 0.2 else None
    return Run(
        steps=steps,
        batch=rng.randint(1, 2),
        side=rng.choice([2, 3, 4]),
        guidance=rng.choice(["batch", "contexts"]),
        seed=rng.randint(0, 3),
        announce=rng.random() < 0.5,
        fail_at=fail_at,
        fail_inside=rng.random() < 0.5,
    )


def random_sequence(rng: random.Random) -> list:
    ops = [Rewrap(rng.randrange(1, len(STRATEGIES)))]
    for _ in range(rng.randint(2, 6)):
        ops.append(Rewrap(rng.randrange(len(STRATEGIES))) if rng.random() < 0.25 else random_run(rng))
    return ops


def random_pipe_run(rng: random.Random) -> PipeRun:
    steps = rng.randint(2, 5)
    failure = rng.random()
    return PipeRun(
        pipe=rng.randrange(2),
        steps=steps,
        images=rng.randint(1, 2),
        size=rng.randrange(3),
        cfg=rng.choice(["on", "off"]),
        seed=rng.randint(0, 3),
        fail_call=rng.randrange(steps) if failure < 0.1 else None,
        fail_step=rng.randrange(steps) if 0.1 <= failure < 0.2 else None,
    )


def random_pipe_sequence(rng: random.Random, compile_every: int) -> list:
    ops: list = [PipeRewrap(rng.randrange(1, len(PIPE_STRATEGIES)), rng.randrange(2))]
    if compile_every > 0 and rng.randrange(compile_every) == 0:
        ops.append(Compile())
    for _ in range(rng.randint(2, 5)):
        if rng.random() < 0.2:
            ops.append(PipeRewrap(rng.randrange(len(PIPE_STRATEGIES)), rng.randrange(2)))
        else:
            ops.append(random_pipe_run(rng))
    return ops


VALUES = [
    -1,
    0,
    1,
    2,
    3,
    1e9,
    -0.5,
    0.5,
    1.5,
    float("nan"),
    float("inf"),
    "",
    "abc",
    "tf1",
    True,
    False,
    None,
    [1],
    "float16",
    "stack",
]
IMAGE = ["taylorseer", "hyca", "taocache", "bac"]
DLLM = ["dkv-cache", "fast-dllm", "ssd", "sparsed"]


def random_bad_input(rng: random.Random):
    """(label, strategy name, options, target attribute)"""
    name = rng.choice(IMAGE + DLLM)
    fields = get_entry(name).config_cls.option_names()
    option = rng.choice(fields) if rng.random() < 0.9 else rng.choice(fields) + "_x"
    value = rng.choice(VALUES)
    target = ("model" if name in IMAGE else "dllm") if rng.random() < 0.9 else ("dllm" if name in IMAGE else "model")
    return f"{name}:{option}={value!r} on {target}", name, {option: value}, target


def try_bad_input(objects, name, options, target) -> str:
    obj = getattr(objects, target)
    try:
        diffaccel.wrap(obj, name, **options)
    except CLEAR_ERRORS:
        return "clear"
    except Exception:  # noqa: BLE001 - counted
        return "unclear"
    try:
        if target == "model":
            denoise(obj, Run(4, 1, 2, "contexts", 0), wrapped=True)
        else:
            obj("12+34=", gen_length=8, steps=8, block_length=8)
        return "valid"
    except Exception:  # noqa: BLE001 - counted
        return "failed later"
    finally:
        diffaccel.unwrap(obj)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="eval/results/fuzz.json")
    parser.add_argument(
        "--compile-every", type=int, default=60, help="one pipeline sequence in N compiles the denoiser (0: never)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("diffaccel").setLevel(logging.ERROR)
    rng = random.Random(args.seed)
    checker = SequenceChecker()
    pipe_checkers = {kind: PipelineSequenceChecker(kind) for kind in sorted(FAMILIES)}
    targets = ["bare flux", *sorted(FAMILIES)]
    objects = make_objects()
    counts = {
        "sequences": 0,
        "operations": 0,
        "runs_compared": 0,
        "runs_raised_on_purpose": 0,
        "runs_refused_as_ambiguous": 0,
        "runs_refused_alike": 0,
        "wraps_refused": 0,
        "compiles": 0,
        "sequences_by_target": {t: 0 for t in targets},
        "mismatches": 0,
        "errors": 0,
        "bad_catalogue": 0,
        "bad_catalogue_clear": 0,
        "random_inputs": 0,
        "random_clear": 0,
        "random_unclear": 0,
        "random_valid": 0,
        "random_failed_later": 0,
    }
    findings: list[str] = []
    accepted: list[str] = []  # random inputs that wrapped and ran: listed so a reader can judge them valid
    for label, action, _pattern in BAD_INPUTS:
        counts["bad_catalogue"] += 1
        try:
            action(objects)
            findings.append(f"bad input accepted: {label}")
        except CLEAR_ERRORS:
            counts["bad_catalogue_clear"] += 1
    started = time.time()
    out = Path(args.out)

    def save(final: bool = False) -> None:
        payload = {
            "command": f"python eval/fuzz.py --minutes {args.minutes} --seed {args.seed} --out {args.out}"
            + (f" --compile-every {args.compile_every}" if args.compile_every != 60 else ""),
            "seconds": round(time.time() - started, 1),
            "torch_threads": 1,
            "final": final,
            **counts,
            "bad_inputs_tried": counts["bad_catalogue"]
            + counts["random_clear"]
            + counts["random_unclear"]
            + counts["random_failed_later"],
            "bad_inputs_clear": counts["bad_catalogue_clear"] + counts["random_clear"],
            "findings": findings[:50],
            "accepted_random_inputs": sorted(accepted),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(payload, indent=2) + "\n")

    last_save = time.time()
    tallies = ("runs_compared", "runs_failed_on_purpose", "runs_refused_as_ambiguous", "runs_refused_alike")
    tallies += ("wraps_refused", "compiles")
    while time.time() - started < args.minutes * 60:
        target = targets[counts["sequences"] % len(targets)]
        if target == "bare flux":
            current, ops = checker, random_sequence(rng)
        else:
            current, ops = pipe_checkers[target], random_pipe_sequence(rng, args.compile_every)
        before = {name: getattr(current, name, 0) for name in tallies}
        try:
            problems = current.run_sequence(ops)
        except Exception:  # noqa: BLE001 - an unexpected exception is a finding too
            counts["errors"] += 1
            findings.append(f"exception in {target} {ops}: {traceback.format_exc(limit=3)}")
            problems = []
        delta = {name: getattr(current, name, 0) - before[name] for name in tallies}
        counts["sequences"] += 1
        counts["sequences_by_target"][target] += 1
        counts["operations"] += len(ops)
        counts["runs_compared"] += delta["runs_compared"]
        counts["runs_raised_on_purpose"] += delta["runs_failed_on_purpose"]
        for name in tallies[2:]:
            counts[name] += delta[name]
        counts["mismatches"] += len(problems)
        findings += problems
        for _ in range(3):
            label, name, options, target = random_bad_input(rng)
            outcome = try_bad_input(objects, name, options, target)
            counts["random_inputs"] += 1
            counts[f"random_{outcome.replace(' ', '_')}"] += 1
            if outcome in ("unclear", "failed later"):
                findings.append(f"{outcome}: {label}")
            elif outcome == "valid" and label not in accepted:
                accepted.append(label)
        if time.time() - last_save > 30:
            save()
            last_save = time.time()
    save(final=True)
    print(json.dumps({k: v for k, v in counts.items()}, indent=1))


if __name__ == "__main__":
    main()
