"""The command line shared by every script in ``pipelines/``: parse, load, wrap, generate, time, save, report.

``pipelines/flux.py`` is ``main(model="flux")``; ``python -m diffaccel.generate flux ...`` is the same run.
Without ``--tiny`` a script loads the real checkpoint (hub or local cache) on CUDA in the model's dtype; with
``--tiny`` it runs on the CPU with a locally built model and downloads nothing.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cli_checks import (
    OneLineArgumentParser,
    check_device,
    check_output_file,
    check_writable_folder,
    one_line,
    positive_int,
)
from ..core.errors import DiffaccelError
from .models import MODELS, Defaults, ModelSpec, get_model, load_pretrained, load_tiny, uses_zoo, zoo_class_labels
from .output import OutputError, resolve_format, save_images, save_videos
from .strategy import apply_strategies, parse_strategies, pipeline_strategies, strategy_tag

logger = logging.getLogger(__name__)

DTYPES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
}
DEFAULT_OUTPUT_DIR = Path("out")


class GenerateError(DiffaccelError, ValueError):
    """A generation request that cannot be honoured as asked (an option that does not apply, no CUDA, ...)."""


@dataclass
class GenerationResult:
    """What one run produced. ``array``: images ``(B, H, W, C)`` or videos ``(B, F, H, W, C)``, floats in [0, 1]
    (``B`` is 1 unless a zoo model was asked for no class: then one sample per class); ``paths``: every file
    written, in batch order."""

    model: str
    strategy: str
    array: np.ndarray
    paths: list[Path]
    wall_s: float
    summary: Any  # diffaccel.Summary, or None for the baseline
    settings: Defaults
    source: str  # what was loaded: a hub id, "zoo:<name>" or "tiny-random:<PipelineClass>"


# ------------------------------------------------------------------------------------------------ parsing
def build_parser(model: str | None = None) -> argparse.ArgumentParser:
    """The parser of one model's script (``model`` fixed), or of ``python -m diffaccel.generate MODEL``."""
    spec = get_model(model) if model is not None else None
    parser = OneLineArgumentParser(
        prog=f"{spec.name}.py" if spec else "python -m diffaccel.generate",
        description=_description(spec),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if spec is None:
        parser.add_argument("model", choices=list(MODELS), help="which model to run")
    parser.add_argument(
        "--strategy",
        action="append",
        metavar="SPEC",
        help="diffaccel strategy as name[:key=value,...], e.g. taylorseer:interval=5; repeat to "
        "compose (--strategy taylorseer --strategy taocache); 'none' for the unaccelerated "
        f"baseline. Available: {', '.join(pipeline_strategies())}. Default: taylorseer with "
        "the model family's preset.",
    )
    parser.add_argument("--prompt", help="text prompt (default: the model's example prompt)")
    parser.add_argument("--negative-prompt", help="negative prompt, for models that use one")
    parser.add_argument("--steps", type=positive_int, help="denoising steps")
    parser.add_argument("--guidance", type=float, help="guidance scale (the model's guidance argument)")
    parser.add_argument("--height", type=positive_int)
    parser.add_argument("--width", type=positive_int)
    if spec is None or spec.kind == "video":
        parser.add_argument("--frames", type=positive_int, help="number of video frames (video models)")
        parser.add_argument("--fps", type=positive_int, help="frames per second of the saved video (video models)")
    parser.add_argument("--max-sequence-length", type=positive_int, help="text tokens (default: the pipeline's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial noise (a CPU generator)")
    parser.add_argument("--output", "-o", help="output file (default: out/<model>-<strategy>-seed<seed>.<format>)")
    parser.add_argument(
        "--format",
        type=str.lower,
        help="png for images; mp4 (default; needs the 'video' extra), gif, or png (one file per frame) for videos",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="run on the CPU with a locally built tiny model (no hub, no GPU): the zoo model of this "
        "class where one exists, else a tiny random pipeline of the same diffusers class",
    )
    parser.add_argument(
        "--tiny-random",
        action="store_true",
        help="like --tiny, but always the tiny random pipeline of the real diffusers class",
    )
    parser.add_argument("--model-id", help="hub id or local folder to load instead of the default checkpoint")
    parser.add_argument("--device", help="torch device (default: cuda; cpu with --tiny)")
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        help="weights dtype (default: the model's, e.g. bfloat16; float32 with --tiny)",
    )
    parser.add_argument(
        "--cpu-offload",
        action="store_true",
        help="diffusers' enable_model_cpu_offload() instead of moving the pipeline to the device",
    )
    parser.add_argument(
        "--vae-tiling",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decode with VAE tiling (default: on for HunyuanVideo and CogVideoX)",
    )
    parser.add_argument(
        "--warmup",
        action="store_true",
        help="call the pipeline once, untimed, before the timed call (CUDA warm-up; HyCa without a "
        "profile uses that call to profile, so the timed call is the accelerated one)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log what diffaccel attaches")
    parser.set_defaults(fixed_model=model)
    return parser


def _description(spec: ModelSpec | None) -> str:
    if spec is None:
        return "Generate an image or a video with a diffaccel strategy. Models: " + ", ".join(
            f"{m.name} ({m.title})" for m in MODELS.values()
        )
    d = spec.defaults
    size = f"{d.width}x{d.height}" + (f", {d.frames} frames at {d.fps} fps" if d.frames else "")
    lines = [
        f"{spec.title} ({spec.pipeline_class}) with a diffaccel strategy.",
        "",
        f"Default: {spec.repo_id} on CUDA in {str(spec.torch_dtype).replace('torch.', '')}, {d.steps} steps, "
        f"guidance {d.guidance}, {size}.",
    ]
    for note in (spec.notes, spec.tiny.notes):
        if note:
            lines += ["", note]
    lines += [
        "",
        "Prints diffaccel.summary(pipe) and the wall time of the generation call; saves "
        + (
            "a PNG."
            if spec.kind == "image"
            else 'an MP4 (imageio-ffmpeg: pip install "diffaccel[video]"), or a GIF / PNG frames with --format.'
        ),
    ]
    return "\n".join(textwrap.fill(line, 100) if line else line for line in lines)


def parse_args(argv: Sequence[str] | None = None, model: str | None = None) -> argparse.Namespace:
    args = build_parser(model).parse_args(argv)
    if model is not None:
        args.model = model
    for name in ("frames", "fps"):
        if not hasattr(args, name):
            setattr(args, name, None)
    return args


# ------------------------------------------------------------------------------------------------ running
def run(args: argparse.Namespace) -> GenerationResult:
    """One generation as the arguments ask. Everything that can be checked without a model is checked first."""
    spec = get_model(args.model)
    requests = parse_strategies(args.strategy if args.strategy else ["taylorseer"])
    tiny = args.tiny or args.tiny_random
    zoo = tiny and uses_zoo(spec, force_random=args.tiny_random)
    if args.device is not None:
        check_device(args.device)
    device = torch.device(args.device or ("cpu" if tiny else "cuda"))
    dtype = DTYPES[args.dtype] if args.dtype else (torch.float32 if tiny else spec.torch_dtype)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GenerateError(
            f"no CUDA device here; {spec.repo_id} needs a GPU. Run --tiny for the CPU stand-in, or "
            "--device cpu to try the real model on the CPU."
        )
    if tiny and (args.model_id or args.cpu_offload):
        raise GenerateError("--model-id and --cpu-offload apply to the real checkpoint, not to --tiny")
    if spec.kind == "image" and (args.frames is not None or args.fps is not None):
        raise GenerateError(f"{spec.name} makes images: --frames and --fps do not apply")
    settings = _settings(spec, args, tiny, zoo)
    fmt = resolve_format(spec.kind, args.format, args.output)
    tag = strategy_tag(requests)
    output = (
        _output_path(Path(args.output), spec, fmt) if args.output else _default_output(spec, tag, args.seed, tiny, fmt)
    )
    _check_output(output, spec, fmt)
    if args.model_id and _looks_like_a_path(args.model_id) and not Path(args.model_id).expanduser().is_dir():
        raise GenerateError(
            f"--model-id {args.model_id}: no such folder; give a hub id (organisation/name) or the folder of a "
            "saved pipeline (save_pretrained)"
        )

    if tiny:
        pipe = load_tiny(spec, zoo)
        source = f"zoo:{spec.tiny.zoo}" if zoo else f"tiny-random:{spec.pipeline_class}"
        if args.device or args.dtype:  # built as float32 on the CPU; move only when asked
            pipe.to(device=device, dtype=dtype)
    else:
        source = args.model_id or spec.repo_id
        pipe = _load_real(spec, source, dtype)
        if args.cpu_offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
    if args.vae_tiling if args.vae_tiling is not None else (spec.vae_tiling and not tiny):
        if not hasattr(getattr(pipe, "vae", None), "enable_tiling"):
            raise GenerateError(f"{type(pipe).__name__} has no VAE that tiles: --vae-tiling does not apply")
        pipe.vae.enable_tiling()
    if tiny:
        pipe.set_progress_bar_config(disable=True)
    apply_strategies(pipe, requests)

    kwargs = _call_kwargs(spec, pipe, settings, zoo)
    if args.warmup:
        pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(args.seed))
    kwargs["generator"] = torch.Generator("cpu").manual_seed(args.seed)
    _synchronize(device)
    start = time.perf_counter()
    out = pipe(**kwargs)
    _synchronize(device)
    wall_s = time.perf_counter() - start

    array = np.asarray(out.images if spec.kind == "image" else out.frames)
    paths = save_images(array, output) if spec.kind == "image" else save_videos(array, output, fmt, settings.fps)
    summary = None
    if requests:
        import diffaccel

        summary = diffaccel.summary(pipe)
    return GenerationResult(spec.name, tag, array, paths, wall_s, summary, settings, source)


def _settings(spec: ModelSpec, args: argparse.Namespace, tiny: bool, zoo: bool) -> Defaults:
    """The model's defaults (real, tiny or zoo) with the user's values on top; options that do not apply to
    this model are errors, not silently dropped."""
    base = spec.tiny.zoo_defaults if zoo else spec.tiny.defaults if tiny else spec.defaults
    if zoo:  # the zoo pipelines take a class, not text, and were trained at one size (and one clip length)
        given = [
            f"--{n.replace('_', '-')}"
            for n in ("negative_prompt", "height", "width", "frames", "max_sequence_length")
            if getattr(args, n) is not None
        ]
        if given:
            size = "a fixed size and frame count" if spec.kind == "video" else "a fixed size"
            raise GenerateError(
                f"the zoo model {spec.tiny.zoo} has no text encoder and {size}: {', '.join(given)} "
                f"do not apply (use --tiny-random for a random {spec.pipeline_class})"
            )
    elif args.negative_prompt is not None and not spec.negative_prompt_supported:
        raise GenerateError(
            f"{spec.title} is guidance-distilled and this script does not run true CFG: "
            "--negative-prompt does not apply"
        )
    overrides = {
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "steps": args.steps,
        "guidance": args.guidance,
        "height": args.height,
        "width": args.width,
        "frames": args.frames,
        "fps": args.fps,
        "max_sequence_length": args.max_sequence_length,
    }
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def _call_kwargs(spec: ModelSpec, pipe, s: Defaults, zoo: bool) -> dict[str, Any]:
    if zoo:  # class-conditional zoo pipeline: a diffusers-like call without text; its weights fix the size
        kwargs = dict(class_labels=zoo_class_labels(pipe, s.prompt), num_inference_steps=s.steps, output_type="np")
        return kwargs if s.guidance is None else {**kwargs, "guidance_scale": s.guidance}
    kwargs: dict[str, Any] = dict(
        prompt=s.prompt,
        num_inference_steps=s.steps,
        height=s.height,
        width=s.width,
        output_type="np",
        **spec.extra_call,
    )
    kwargs[spec.guidance_arg] = s.guidance
    if s.negative_prompt is not None:
        kwargs["negative_prompt"] = s.negative_prompt
    if s.max_sequence_length is not None:
        kwargs["max_sequence_length"] = s.max_sequence_length
    if spec.kind == "video":
        kwargs["num_frames"] = s.frames
        if spec.fps_arg:
            kwargs[spec.fps_arg] = s.fps
    return kwargs


def _load_real(spec: ModelSpec, source: str, dtype: torch.dtype):
    try:
        return load_pretrained(spec, source, dtype)
    except OSError as error:
        raise GenerateError(
            f"could not load {source} ({spec.pipeline_class}): {error}\nThe checkpoint comes from the Hugging Face "
            "hub or its local cache (gated models need `huggingface-cli login` and an accepted licence); pass "
            "--model-id for a local folder, or --tiny to run the CPU stand-in."
        ) from error


def _check_output(output: Path, spec: ModelSpec, fmt: str) -> None:
    """Before any model loads: the output can be written (a PNG-frames video writes a folder)."""
    if spec.kind == "video" and fmt == "png":
        if output.exists() and not output.is_dir():
            raise GenerateError(f"--output: {output} is a file; PNG frames go into a folder, give a folder path")
        check_writable_folder(output, "--output")
    else:
        check_output_file(output)


def _looks_like_a_path(text: str) -> bool:
    """A hub id is `name` or `organisation/name`; anything else given to --model-id is a local folder."""
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text


def _output_path(path: Path, spec: ModelSpec, fmt: str) -> Path:
    """``--output`` as given, with the format's extension added when it has none (PNG frames go to a folder)."""
    frames_folder = spec.kind == "video" and fmt == "png"
    return path if path.suffix or frames_folder else path.with_name(f"{path.name}.{fmt}")


def _default_output(spec: ModelSpec, tag: str, seed: int, tiny: bool, fmt: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._=+-]+", "_", tag)
    suffix = "" if (spec.kind == "video" and fmt == "png") else f".{fmt}"
    return DEFAULT_OUTPUT_DIR / f"{spec.name}{'-tiny' if tiny else ''}-{slug}-seed{seed}{suffix}"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------ report
def report(result: GenerationResult) -> str:
    lines = [f"model: {result.model} ({result.source})", f"strategy: {result.strategy}"]
    if result.summary is None:
        lines.append("diffaccel summary: none (baseline: full computation, nothing wrapped)")
    else:
        lines.append(str(result.summary))
    stages = (
        "class embedding and denoising" if result.source.startswith("zoo:") else "text encoding, denoising, decoding"
    )
    lines.append(f"wall time: {result.wall_s:.3f} s (the pipeline call: {stages})")
    shown = result.paths if len(result.paths) <= 4 else [*result.paths[:2], "...", result.paths[-1]]
    lines.append(
        f"saved: {', '.join(map(str, shown))}" + (f" ({len(result.paths)} files)" if len(result.paths) > 4 else "")
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, model: str | None = None) -> int:
    """Entry point of the ``pipelines/`` scripts and of ``python -m diffaccel.generate``. Returns the exit code."""
    args = parse_args(argv, model)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        result = run(args)
    except KeyboardInterrupt:  # (one generation: nothing to resume; run the same command again)
        print("interrupted: nothing was saved; run the same command again to generate", file=sys.stderr)
        return 130
    except (DiffaccelError, OutputError, OSError, ValueError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    print(report(result))
    return 0
