"""Train the long-context zoo models: small LLaDA-architecture models on recall over 500+ token prompts.

Two tasks (``--task``), both with 32-token answers, so caches and sparse attention have a long
context to save on and any loss of far context shows in the accuracy:

* ``recall`` (:mod:`diffaccel.dllm.tasks.recall`): 515-token prompts (a passage of 512 distinct symbols and a
  cue from it), the answer is the 32 symbols that follow the cue. With ``--cue-position 0`` it is a copy over
  a fixed distance, zoo model ``llada-recall`` (its manifest holds the command); with the cue anywhere (the
  default) a content lookup, written to ``llada-recall-free-cue`` unless ``--output`` says otherwise;
* ``kv`` (:mod:`diffaccel.dllm.tasks.kv`, zoo model ``llada-kv``): multi-query associative recall,
  514-token prompts (240 key-value records and 32 queried keys), the answer is the queried keys' values.
  Its filler variant (``--n-filler``, ``--n-filler-symbols``; ours) keeps few records over few key
  symbols and pads the prompt with filler tokens; its curriculum axis is the filler count.

One command, seeded, CPU only::

    OMP_NUM_THREADS=1 nohup python -m diffaccel.dllm.train_recall --task kv --seed 0 > kv-train.log 2>&1 &

Sizes follow a curriculum, because a lookup is learnt much faster in short prompts and then carries
over to long ones. The curriculum axis is the task's ``size`` (passage symbols for ``recall``, records
for ``kv``): batches start with ``--curriculum-start``, and every ``--curriculum-window`` steps whose mean
progress accuracy (the task's ``progress_accuracy``: for ``recall`` masked answer tokens whose left
neighbour is visible, the lookup stepwise decoding relies on; for ``kv`` every masked answer token)
reached ``--curriculum-advance-at`` multiply the cap by ``--curriculum-growth`` (up to the task's size);
each batch draws its size uniformly from ``[(1 - spread) cap, cap]`` (``--length-spread``, 0.5). The run
is deterministic for a seed (one thread). A resumable checkpoint is written to ``<output>/checkpoint/``
every ``--checkpoint-every`` steps (``--resume`` continues from it, given the same options: the checkpoint
records them and other ones are refused; ``--from-checkpoint`` turns a stopped run into a zoo folder). At the
end ``model.safetensors``, a hub-format ``config.json`` and ``manifest.json`` (command, seed, time, final loss,
sha256, exact match with stepwise decoding on a held-out set) are written to ``diffaccel/zoo/weights/<zoo model>/``. The loss is LLaDA's SFT loss
(:mod:`diffaccel.dllm.training`).
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from pathlib import Path

import torch

from ..zoo.weights_io import write_json
from .curriculum import Axis, AxisCurriculum
from .llada import LLaDAModelLM
from .tasks.kv import KeyValueTask
from .tasks.recall import RecallTask
from .training import (
    Checkpoint,
    adamw,
    add_checkpoint_arguments,
    add_position_arguments,
    evaluate_only,
    exact_match_into_manifest,
    optimizer_step,
    resume_progress,
    run_arguments,
    schedule_from,
    sft_loss,
    stepwise_exact_match,
    tiny_llada,
    training_manifest,
    write_zoo_folder,
)

logger = logging.getLogger(__name__)

MODULE = "diffaccel.dllm.train_recall"
ZOO_NAMES = {"recall": "llada-recall", "kv": "llada-kv"}
#: the free-cue recall (the cue anywhere: a content lookup; not in the zoo yet) is another task than the committed
#: fixed-distance ``llada-recall``, so by default it is written to a folder of its own, never over that model
FREE_CUE_NAME = "llada-recall-free-cue"


def zoo_name_for(args: argparse.Namespace) -> str:
    """The zoo folder (and manifest) name of a run: the task's, or :data:`FREE_CUE_NAME` for recall without a
    fixed cue position."""
    if args.task == "recall" and args.cue_position is None:
        return FREE_CUE_NAME
    return ZOO_NAMES[args.task]


WEIGHTS = Path(__file__).resolve().parent.parent / "zoo" / "weights"
Task = RecallTask | KeyValueTask


def build_task(args: argparse.Namespace) -> Task:
    if args.task == "kv":
        return KeyValueTask(
            n_records=args.n_records,
            gen_length=args.gen_length,
            n_keys=args.n_keys,
            n_values=args.n_values,
            n_filler=args.n_filler,
            n_filler_symbols=args.n_filler_symbols,
            layout=args.layout,
            echo=args.echo,
        )
    return RecallTask(
        passage_length=args.passage_length,
        gen_length=args.gen_length,
        n_symbols=args.n_symbols,
        cue_position=args.cue_position,
    )


def build_model(args: argparse.Namespace, task: Task) -> LLaDAModelLM:
    return tiny_llada(args, task.vocab_size, task.mask, task.eos, task.bos)


def curriculum_length(cap: float, task: Task, rng: random.Random, spread: float = 0.5) -> int:
    """Size of this step's batch: uniform in ``[(1 - spread) cap, cap]``, at least the task's ``min_size``."""
    low = task.min_size
    top = max(low, int(cap))
    return rng.randint(max(low, int(top * (1 - spread))), top)


def build_axes(args: argparse.Namespace, task: Task) -> AxisCurriculum | None:
    """The multi-axis curriculum of ``--curriculum-axes`` (kv only), checked against the task's sizes."""
    if not args.curriculum_axes:
        return None
    axes = [Axis.parse(text) for text in args.curriculum_axes]
    ends = {"records": task.n_records, "keys": task.n_keys, "filler": task.n_filler}
    for axis in axes:
        if axis.name not in ends:
            raise ValueError(f"curriculum axis {axis.name!r}: one of {sorted(ends)}")
        if axis.end != ends[axis.name]:
            raise ValueError(
                f"curriculum axis {axis.name} must end at the task's size {ends[axis.name]}, not {axis.end}"
            )
    return AxisCurriculum(
        axes, args.curriculum_window, args.curriculum_advance_at, args.curriculum_growth, args.length_spread
    )


def stage_done(args: argparse.Namespace, axes: AxisCurriculum | None, accuracies: list[float]) -> bool:
    """``--stop-at-accuracy``: the multi-axis curriculum is at its end and its last full window reached the bar."""
    if args.stop_at_accuracy is None or axes is None or not axes.done or len(accuracies) < args.curriculum_window:
        return False
    return sum(accuracies[-args.curriculum_window :]) / args.curriculum_window >= args.stop_at_accuracy


def batch_sizes(sizes: dict[str, int]) -> dict[str, int]:
    """:meth:`KeyValueTask.batch` keywords for a curriculum's axis sizes; the key symbols in use are at least
    the records (distinct keys)."""
    out = {"records": sizes.get("records"), "fillers": sizes.get("filler"), "keys": sizes.get("keys")}
    if out["keys"] is not None and out["records"] is not None:
        out["keys"] = max(out["keys"], out["records"])
    return {k: v for k, v in out.items() if v is not None}


def init_weights(model: LLaDAModelLM, folder: Path) -> None:
    """``--init-from``: load the model part of a training checkpoint (``<folder>/state.safetensors``)."""
    from safetensors.torch import load_file

    tensors = load_file(str(Path(folder) / "state.safetensors"))
    model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    logger.info("initialised the weights from %s", folder)


def next_cap(cap: float, accuracies: list[float], args: argparse.Namespace, task: Task) -> float:
    """Grow the size cap once the last window of steps was accurate enough."""
    if cap >= task.size or len(accuracies) < args.curriculum_window:
        return cap
    if sum(accuracies[-args.curriculum_window :]) / args.curriculum_window < args.curriculum_advance_at:
        return cap
    return float(min(task.size, cap * args.curriculum_growth))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(ZOO_NAMES), default="recall")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gen-length", type=int, default=32)
    parser.add_argument("--passage-length", type=int, default=512, help="recall: passage symbols")
    parser.add_argument("--n-symbols", type=int, default=512, help="recall: symbol vocabulary")
    parser.add_argument(
        "--cue-position",
        type=int,
        default=None,
        help="recall: fix the cue's position (a fixed-distance copy task); default: anywhere",
    )
    parser.add_argument("--n-records", type=int, default=240, help="kv: key-value records per prompt")
    parser.add_argument("--n-keys", type=int, default=256, help="kv: key vocabulary")
    parser.add_argument("--n-values", type=int, default=256, help="kv: value vocabulary")
    parser.add_argument(
        "--n-filler",
        type=int,
        default=0,
        help="kv, ours: filler tokens among the records (then the curriculum grows the filler count)",
    )
    parser.add_argument("--n-filler-symbols", type=int, default=0, help="kv: filler vocabulary (with --n-filler)")
    parser.add_argument(
        "--echo",
        action="store_true",
        help="kv, ours: the answer lists each queried key before its value (--gen-length counts both)",
    )
    parser.add_argument(
        "--layout",
        choices=("pairs", "columns"),
        default="pairs",
        help="kv: records as k v pairs, or (ours, filler variant) a key column then a value column",
    )
    parser.add_argument(
        "--copy-rows",
        type=float,
        default=0.0,
        help="kv, ours: share of training rows that copy the queried keys (teaches where each query is)",
    )
    parser.add_argument(
        "--curriculum-axes",
        nargs="+",
        default=None,
        metavar="NAME:START:END",
        help="kv, ours: grow these axes one at a time (records, keys, filler), e.g. records:2:32 keys:16:32 "
        "filler:0:414 (diffaccel.dllm.curriculum); default: the single size axis from --curriculum-start",
    )
    parser.add_argument(
        "--full-mask-rows",
        type=float,
        default=0.0,
        help="ours: share of rows whose whole answer is masked; progress is then measured on those rows",
    )
    parser.add_argument(
        "--stop-at-accuracy",
        type=float,
        default=None,
        help="ours: end the run (checkpoint, zoo folder) once the curriculum is done and a window reaches this",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="warm start: the model weights of another run's checkpoint folder (optimizer and schedule start fresh)",
    )
    parser.add_argument("--d-model", type=int, default=96)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--ff", type=int, default=256)
    add_position_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--curriculum-start", type=int, default=64, help="first size cap (passage symbols / records)")
    parser.add_argument(
        "--length-spread", type=float, default=0.5, help="batch sizes are uniform in [(1 - spread) cap, cap]"
    )
    parser.add_argument("--curriculum-window", type=int, default=50)
    parser.add_argument("--curriculum-advance-at", type=float, default=0.9)
    parser.add_argument("--curriculum-growth", type=float, default=1.3)
    add_checkpoint_arguments(parser, checkpoint_every=50)
    parser.add_argument(
        "--probe-every",
        type=int,
        default=300,
        help="every this many steps, log the stepwise exact match on 16 full-length prompts",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 leaves cores to other work)")
    parser.add_argument("--eval-count", type=int, default=256)
    parser.add_argument("--output", type=Path, default=None, help="default: diffaccel/zoo/weights/<zoo model>")
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="only (re)compute the held-out evaluation of the weights in --output and record it",
    )
    args = parser.parse_args(argv)
    if args.curriculum_axes and args.task != "kv":
        parser.error("--curriculum-axes is for --task kv")
    if args.output is None:
        args.output = WEIGHTS / zoo_name_for(args)
    return args


@torch.no_grad()
def probe(model: LLaDAModelLM, task: Task, count: int = 16) -> float:
    """Exact match with stepwise decoding on ``count`` full-length prompts (a cheap progress check)."""
    return stepwise_exact_match(model, task, count, task.gen_length, task.mask, seed=999)


def evaluate_into_manifest(model: LLaDAModelLM, task: Task, manifest: dict, eval_count: int) -> dict:
    block_lengths = sorted({task.gen_length, task.gen_length // 4}, reverse=True)
    return exact_match_into_manifest(model, task, manifest, eval_count, block_lengths, task.mask)


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    zoo_name = zoo_name_for(args)
    if args.evaluate_only:
        return evaluate_only(args, MODULE, load_recorded, evaluate_recorded)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    task = build_task(args)
    model = build_model(args, task)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = adamw(model, args.lr)
    checkpoint = Checkpoint(args.output / "checkpoint", run_arguments(args))
    start_step, progress_info = resume_progress(args, checkpoint, model, optimizer, generator)
    recent, elapsed = progress_info.get("recent_losses", []), progress_info.get("train_time_s", 0.0)
    cap = progress_info.get("cap", float(args.curriculum_start))
    axes = build_axes(args, task)
    if axes is not None and "axes" in progress_info:
        axes.restore(progress_info["axes"])
    accuracies = progress_info.get("recent_accuracies", [])
    if start_step:
        logger.info("resumed at step %d (size cap %.0f)", start_step, cap)
    elif args.init_from is not None:
        init_weights(model, args.init_from)
    scheduler = schedule_from(optimizer, args, start_step)
    logger.info(
        "training %s: %d parameters, %d steps, prompt %d + answer %d tokens",
        zoo_name,
        n_params,
        args.steps,
        task.prompt_length,
        task.gen_length,
    )

    started = time.time() - elapsed
    if not args.from_checkpoint:
        for step in range(start_step, args.steps):
            rng = random.Random(args.seed * 1_000_003 + step)  # the length draw depends on the step and cap
            extra = {"copy_fraction": args.copy_rows} if args.copy_rows else {}
            if axes is None:
                extra["size"] = curriculum_length(cap, task, rng, args.length_spread)
            else:
                extra.update(batch_sizes(axes.sizes(rng)))
            prompts, answers = task.batch(args.batch_size, generator, **extra)
            length = extra["size"] if axes is None else prompts.shape[1]
            loss, predicted, masked = sft_loss(
                model,
                prompts,
                answers,
                generator,
                task.mask,
                return_predictions=True,
                full_mask_rows=args.full_mask_rows,
                full_mask=getattr(task, "lookup_positions", None),
            )
            if args.copy_rows:  # progress is measured on the task's own rows
                masked = masked & (prompts[:, -task.gen_length - 1] != task.copy)[:, None]
            if args.full_mask_rows:  # ... and on the rows whose every lookup is masked (no neighbour to read)
                lookups = task.lookup_positions
                full = (masked == lookups).all(dim=1, keepdim=True)
                masked = masked & full & lookups
            accuracy = task.progress_accuracy(predicted, answers, masked)
            recent = (recent + [optimizer_step(model, optimizer, scheduler, loss, step)])[-100:]
            accuracies = (accuracies + [accuracy])[-args.curriculum_window :]
            if step % 10 == 0:
                logger.info(
                    "step %d size %d loss %.4f progress acc %.3f (mean loss %.4f, mean acc %.3f) %.0f s",
                    step,
                    length,
                    loss.item(),
                    accuracy,
                    sum(recent) / len(recent),
                    sum(accuracies) / len(accuracies),
                    time.time() - started,
                )
            if axes is not None and (step + 1) % args.curriculum_window == 0 and axes.advance(accuracies):
                logger.info("step %d: curriculum now at %s", step + 1, axes.describe())
                accuracies = []
            if axes is None and (step + 1) % args.curriculum_window == 0:
                grown = next_cap(cap, accuracies, args, task)
                if grown != cap:
                    logger.info("step %d: size cap %.0f -> %.0f", step + 1, cap, grown)
                    cap, accuracies = grown, []
            if stage_done(args, axes, accuracies):
                logger.info(
                    "step %d: curriculum done at mean accuracy >= %s; stopping", step + 1, args.stop_at_accuracy
                )
                args.steps = step + 1
            if (step + 1) % args.probe_every == 0:
                logger.info(
                    "step %d probe: stepwise exact match on 16 full-length prompts %.3f", step + 1, probe(model, task)
                )
            if (step + 1) % args.checkpoint_every == 0 or step + 1 >= args.steps:
                checkpoint.save(
                    step + 1,
                    model,
                    optimizer,
                    generator,
                    {
                        "recent_losses": recent,
                        "train_time_s": time.time() - started,
                        "cap": cap,
                        "recent_accuracies": accuracies,
                        **({"axes": axes.state()} if axes is not None else {}),
                    },
                )
            if step + 1 >= args.steps:  # --stop-at-accuracy ended the run early
                break
    train_s = time.time() - started
    final_loss = sum(recent) / max(1, len(recent))
    model.eval()
    steps_done = start_step if args.from_checkpoint else args.steps
    manifest = training_manifest(
        zoo_name,
        MODULE,
        argv,
        args,
        steps_done=steps_done,
        parameters=n_params,
        train_time_s=round(train_s, 1),
        final_loss=final_loss,
        final_loss_definition="mean LLaDA SFT loss over the last 100 training steps (curriculum lengths)",
        final_size_cap=cap,
    )
    args.output.mkdir(parents=True, exist_ok=True)
    manifest = write_zoo_folder(args.output, model, zoo_name, task.describe(), manifest)
    logger.info("saved %s (final loss %.5f, %.0f s)", args.output, final_loss, train_s)
    evaluate_into_manifest(model, task, manifest, args.eval_count)
    write_json(args.output / "manifest.json", manifest)
    return manifest


def load_recorded(folder: Path) -> LLaDAModelLM:
    from .loading import load_llada

    return load_llada(folder).eval()


def evaluate_recorded(model: LLaDAModelLM, folder: Path, manifest: dict, eval_count: int) -> None:
    """``--evaluate-only``: the evaluation of :func:`main`, on the task the folder records."""
    from .zoo import read_zoo_task

    evaluate_into_manifest(model, read_zoo_task(folder), manifest, eval_count)


if __name__ == "__main__":
    main()
