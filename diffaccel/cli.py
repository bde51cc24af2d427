"""The `diffaccel` command line. Subcommand: `compare`.

diffaccel compare                                  # the default zoo model, baseline + strategies + peers
diffaccel compare --strategies "taylorseer:interval=4 diffusers:fbc" --seeds 0-7
accelerate launch -m diffaccel compare ...         # seeds/prompts split across processes
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence

from .cli_checks import OneLineArgumentParser, positive_int

COMPARE_EPILOG = """\
strategy specs:
  none                          the full-step baseline (always run first; every row is scored against it)
  taylorseer:interval=4         a diffaccel strategy with options (see --list-strategies)
  diffusers:fbc:threshold=0.1   a diffusers cache hook run through diffusers' own code
  cache-dit:dbcache             cache-dit (optional extra: pip install 'diffaccel[cache-dit]')
  Several specs: repeat --strategies, or separate with commas/spaces; an item "key=value" without a colon
  continues the previous spec's options ("taylorseer:interval=2,order=2,none" is two specs).

models:
  zoo names (flux-photos, dit-digits, unet-photos; llada-addition, dream-addition go to the dLLM evaluation),
  testing:tiny-flux / testing:tiny-sd / testing:tiny-wan (random tiny pipelines, plumbing checks only),
  or a Hugging Face hub id / local folder for a real pipeline, e.g.
    diffaccel compare --model black-forest-labs/FLUX.1-dev --device cuda --dtype bfloat16 --steps 28 \\
        --prompts prompts.txt --strategies "taylorseer:interval=4 diffusers:fbc"
  The hub path is written for real; the project's own tests and measurements run offline on CPU (zoo and
  testing models), so it has not been exercised against the hub.

output (in --out): results.jsonl (one record per run, written atomically as each run finishes; --resume
skips finished runs), report.md, summary.json, grid.png, speed_quality.png, baseline/ (cached full-step
outputs), images/, run.json.
"""


def _seeds(text: str) -> list[int]:
    """`0,1,2`, `0-3` or a mix (`0-3,10`)."""
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.replace(" ", ",").split(","))):
        if "-" in part.lstrip("-")[0:] and not part.startswith("-"):
            low, high = part.split("-", 1)
            seeds.extend(range(int(low), int(high) + 1))
        else:
            seeds.append(int(part))
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds given")
    return list(dict.fromkeys(seeds))


def _key_value(text: str) -> tuple[str, object]:
    from .strategies.registry import parse_option_value

    key, eq, raw = text.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), parse_option_value(raw.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(prog="diffaccel", description="Training-free acceleration of diffusion models.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    compare = sub.add_parser(
        "compare",
        help="speed and quality of strategies and peers against the full-step run",
        description="Run the full-step baseline and each strategy on the same seeds; report wall-clock speedup "
        "and PSNR / SSIM / LPIPS against the baseline output.",
        epilog=COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument(
        "--model", default=None, help="zoo name (default: flux-photos), testing:tiny-*, or hub id / local path"
    )
    compare.add_argument(
        "--strategies",
        action="append",
        default=None,
        metavar="SPECS",
        help="strategy specs (repeatable; comma/space separated); default: every diffaccel strategy at its "
        "preset, TaylorSeer's tuned presets (preset=psnr35, psnr30), and the diffusers and cache-dit peers "
        "(at their swept best settings where a sweep was run for the model and step count)",
    )
    compare.add_argument("--no-peers", action="store_true", help="with the default strategies: leave out the peers")
    compare.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="denoising steps (default: 20 for zoo models, 28 for hub models)",
    )
    compare.add_argument("--seeds", type=_seeds, default=None, help="seeds, e.g. 0,1,2 or 0-3 (default: 0-3)")
    compare.add_argument("--guidance-scale", type=float, default=None, help="guidance scale (default: the pipeline's)")
    compare.add_argument(
        "--prompts",
        default=None,
        metavar="FILE",
        help="prompts for text-to-image/video models (.txt/.tsv/.csv/.json); class names or ids for class-conditional ones",
    )
    compare.add_argument(
        "--scheduler",
        action="append",
        type=_key_value,
        default=None,
        metavar="KEY=VALUE",
        help="set a scheduler config value (repeatable), e.g. shift=0.3 for a flow-matching "
        "schedule that spends more steps at low noise",
    )
    compare.add_argument("--height", type=int, default=None)
    compare.add_argument("--width", type=int, default=None)
    compare.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="output folder (default: a new diffaccel-compare/<model>/<timestamp>)",
    )
    group = compare.add_mutually_exclusive_group()
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue the runs in --out (default: the latest folder of this model), skipping finished ones",
    )
    group.add_argument("--overwrite", action="store_true", help="delete earlier results in --out and start again")
    compare.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    compare.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, float16")
    compare.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads (default: 1 for zoo/testing models on CPU, torch's default otherwise)",
    )
    compare.add_argument(
        "--warmup-seed", type=int, default=10_000, help="held-out seed for warm-up and calibration runs"
    )
    compare.add_argument(
        "--max-runs",
        type=positive_int,
        default=None,
        help="stop after this many new runs (finish later with --resume)",
    )
    compare.add_argument(
        "--repeats",
        type=positive_int,
        default=1,
        help="time every run this many times and keep the fastest (steadier on a busy machine)",
    )
    compare.add_argument("--grid-seeds", type=positive_int, default=3, help="seeds shown in grid.png")
    compare.add_argument(
        "--tune",
        action="append",
        type=_tune_target,
        default=None,
        metavar="psnr=DB",
        help="run diffaccel.tune for this PSNR target (calibrated on seeds 100-101, validated on 102-103) "
        "and add its choice as a row; repeatable",
    )
    compare.add_argument(
        "--episodes", type=positive_int, default=None, help="policy models: evaluation episodes per seed (default 200)"
    )
    compare.add_argument(
        "--problems", type=positive_int, default=None, help="dLLM models: held-out problems per seed (default 64)"
    )
    compare.add_argument(
        "--batch-size", type=positive_int, default=None, help="dLLM models: prompts per pipeline call (default 64)"
    )
    compare.add_argument("--no-lpips", action="store_true", help="skip LPIPS even when its weights are present")
    compare.add_argument("--no-progress", action="store_true", help="no progress bars")
    compare.add_argument("--list-strategies", action="store_true", help="list strategy and peer names, then exit")
    return parser


def _list_strategies() -> None:
    from .compare.defaults import DIFFACCEL_SWEEPS, image_strategies
    from .compare.peers import describe_peers
    from .strategies.registry import get_entry

    print("diffaccel strategies (options: fields of the config; default sweep in brackets):")
    for name in image_strategies():
        entry = get_entry(name)
        sweep = DIFFACCEL_SWEEPS.get(name)
        swept = (
            " | ".join(",".join(f"{k}={v}" for k, v in o.items()) or "family preset" for o in sweep) if sweep else ""
        )
        print(f"  {name:<24} {entry.description}" + (f"  [{swept}]" if swept else ""))
        print(f"  {'':<24} options: {', '.join(entry.config_cls.option_names())}")
    print("peers:")
    for name, text in describe_peers():
        print(f"  {name:<24} {text}")
    print("  none                     the full-step baseline")
    try:
        from .dllm.api import dllm_strategies

        print("dLLM strategies (for dLLM zoo models such as --model llada-addition):")
        for name in dllm_strategies():
            print(f"  {name:<24} options: {', '.join(get_entry(name).config_cls.option_names())}")
    except ImportError:  # pragma: no cover - the dLLM package is part of diffaccel
        pass


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("diffaccel").setLevel(level)
    if verbosity < 2:
        for noisy in ("diffusers", "transformers"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def _tune_target(text: str) -> float:
    from .tune import parse_target

    try:
        return parse_target(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if args.command is None:
        parser.print_help()
        return 2
    _configure_logging(args.verbose)
    if args.command == "compare":
        return _compare(args, parser)
    parser.error(f"unknown command {args.command}")
    return 2


def _compare(args, parser: argparse.ArgumentParser) -> int:
    if args.list_strategies:
        _list_strategies()
        return 0
    from .cli_checks import UsageError, check_compare_args
    from .compare import CompareSettings, OutputExistsError, parse_spec_list, run_compare
    from .compare.models import zoo_kind
    from .core.errors import DiffaccelError
    from .zoo import DEFAULT_MODEL

    model = args.model or DEFAULT_MODEL
    try:
        check_compare_args(args, model, zoo_kind(model))
    except UsageError as error:
        print(f"diffaccel compare: error: {error}", file=sys.stderr)
        return 2
    if args.strategies:
        try:  # fail before loading anything
            if zoo_kind(model) == "dllm":
                from .compare.dllm import dllm_specs

                dllm_specs(args.strategies)
            elif zoo_kind(model) == "policy":
                from .compare.policy import policy_specs

                policy_specs(args.strategies)
            else:
                parse_spec_list(args.strategies)
        except (DiffaccelError, ValueError, TypeError) as error:
            parser.error(f"--strategies: {error}")

    settings = CompareSettings(
        model=model,
        strategies=args.strategies,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        prompts_file=args.prompts,
        out=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        device=args.device,
        dtype=args.dtype,
        threads=args.threads,
        warmup_seed=args.warmup_seed,
        max_runs=args.max_runs,
        repeats=args.repeats,
        grid_seeds=args.grid_seeds,
        height=args.height,
        width=args.width,
        episodes=args.episodes,
        problems=args.problems,
        batch_size=args.batch_size,
        scheduler=dict(args.scheduler or ()),
        lpips=not args.no_lpips,
        peers=not args.no_peers,
        progress=not args.no_progress,
    )
    if args.seeds is not None:
        settings.seeds = args.seeds
    settings.tune = list(args.tune or [])
    try:
        outcome = run_compare(settings)
    except KeyboardInterrupt:
        print(
            f"diffaccel compare: interrupted; finished runs are saved. Continue with: "
            f"{_resume_command(args, settings)}",
            file=sys.stderr,
        )
        return 130
    except (OutputExistsError, OSError, DiffaccelError, ValueError) as error:
        print(f"diffaccel compare: error: {error}", file=sys.stderr)
        return 2
    return 0 if not outcome.interrupted else 3


def _resume_command(args, settings) -> str:
    """`diffaccel compare <the same arguments> --out <the folder> --resume`."""
    from .cli_checks import resume_command
    from .compare.distributed import Processes
    from .compare.run import resolve_out

    out = args.out
    if out is None:
        try:  # the most recent folder of this model: the one just interrupted
            out = resolve_out(dataclasses.replace(settings, resume=True), Processes.detect(settings.device))
        except (FileNotFoundError, ValueError):
            out = None
    return resume_command(["compare", *args.argv[args.argv.index("compare") + 1 :]], out)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
