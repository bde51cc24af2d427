"""Train the ``llada-recall`` zoo model: a small LLaDA-architecture model on long-context passage recall.

The task (:mod:`diffaccel.dllm.tasks.recall`) has 515-token prompts (a passage of 512 distinct symbols
and a cue from it) and 32-token answers (the symbols that follow the cue), so caches and sparse
attention have a long context to save on and any loss of far context shows in the accuracy. One
command, seeded, CPU only::

    OMP_NUM_THREADS=1 nohup python -m diffaccel.dllm.train_recall --seed 0 > recall-train.log 2>&1 &

Lengths follow a curriculum, because the lookup is learnt much faster on short passages and then
carries over to long ones: batches start with ``--curriculum-start`` symbols per passage, and every
``--curriculum-window`` steps whose mean "next-symbol" accuracy (masked answer tokens whose left
neighbour is visible, the lookup stepwise decoding relies on) reached ``--curriculum-advance-at``
multiply the passage cap by ``--curriculum-growth`` (up to ``--passage-length``); each batch draws its
length uniformly from ``[(1 - spread) cap, cap]`` (``--length-spread``, 0.5). The run is deterministic for a seed (one thread). A resumable
checkpoint is written to ``<output>/checkpoint/`` every ``--checkpoint-every`` steps (``--resume``
continues from it; ``--from-checkpoint`` turns a stopped run into a zoo folder). At the end
``model.safetensors``, a hub-format ``config.json`` and ``manifest.json`` (command, seed, time, final
loss, sha256, exact match with stepwise decoding on a held-out set) are written to
``diffaccel/zoo/weights/llada-recall/``. The loss is LLaDA's SFT loss (:mod:`diffaccel.dllm.training`).
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from pathlib import Path

import torch

from ..zoo.weights_io import read_json, write_json
from .llada import LLaDAModelLM
from .tasks.recall import RecallTask
from .training import (
    Checkpoint,
    adamw,
    evaluate_only,
    exact_match_into_manifest,
    optimizer_step,
    schedule_from,
    sft_loss,
    stepwise_exact_match,
    tiny_llada,
    training_manifest,
    write_zoo_folder,
)

logger = logging.getLogger(__name__)

ZOO_NAME = "llada-recall"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "zoo" / "weights" / ZOO_NAME
MODULE = "diffaccel.dllm.train_recall"


def build_task(args: argparse.Namespace) -> RecallTask:
    return RecallTask(
        passage_length=args.passage_length,
        gen_length=args.gen_length,
        n_symbols=args.n_symbols,
        cue_position=args.cue_position,
    )


def build_model(args: argparse.Namespace, task: RecallTask) -> LLaDAModelLM:
    return tiny_llada(args, task.vocab_size, task.mask, task.eos, task.bos)


def curriculum_length(cap: float, task: RecallTask, rng: random.Random, spread: float = 0.5) -> int:
    """Passage length of this step's batch: uniform in ``[(1 - spread) cap, cap]`` (room for the answer)."""
    low = task.gen_length + 1
    top = max(low, int(cap))
    return rng.randint(max(low, int(top * (1 - spread))), top)


def next_cap(cap: float, accuracies: list[float], args: argparse.Namespace, task: RecallTask) -> float:
    """Grow the passage cap once the last window of steps was accurate enough."""
    if cap >= task.passage_length or len(accuracies) < args.curriculum_window:
        return cap
    if sum(accuracies[-args.curriculum_window :]) / args.curriculum_window < args.curriculum_advance_at:
        return cap
    return float(min(task.passage_length, cap * args.curriculum_growth))


def task_dict(task: RecallTask) -> dict:
    return {
        "name": "recall",
        "passage_length": task.passage_length,
        "gen_length": task.gen_length,
        "n_symbols": task.n_symbols,
        "cue_position": task.cue_position,
        "prompt_length": task.prompt_length,
    }


def next_symbol_accuracy(predicted: torch.Tensor, answers: torch.Tensor, masked: torch.Tensor) -> float:
    """Accuracy on masked answer tokens whose left neighbour is visible (the cue for the first one):
    the single lookup each step of left-to-right stepwise decoding needs."""
    left_visible = torch.cat([torch.zeros_like(masked[:, :1]), masked[:, :-1]], dim=1).logical_not()
    counted = masked & left_visible
    return ((predicted == answers) & counted).sum().item() / max(1, counted.sum().item())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--passage-length", type=int, default=512)
    parser.add_argument("--gen-length", type=int, default=32)
    parser.add_argument("--n-symbols", type=int, default=512)
    parser.add_argument(
        "--cue-position",
        type=int,
        default=None,
        help="fix the cue's position (a fixed-distance copy task); default: anywhere",
    )
    parser.add_argument("--d-model", type=int, default=96)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--ff", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--curriculum-start", type=int, default=64)
    parser.add_argument(
        "--length-spread", type=float, default=0.5, help="batch passage lengths are uniform in [(1 - spread) cap, cap]"
    )
    parser.add_argument("--curriculum-window", type=int, default=50)
    parser.add_argument("--curriculum-advance-at", type=float, default=0.9)
    parser.add_argument("--curriculum-growth", type=float, default=1.3)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument(
        "--probe-every",
        type=int,
        default=300,
        help="every this many steps, log the stepwise exact match on 16 full-length prompts",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 leaves cores to other work)")
    parser.add_argument("--eval-count", type=int, default=256)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--resume", action="store_true", help="continue from <output>/checkpoint/")
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="only (re)compute the held-out evaluation of the weights in --output and record it",
    )
    parser.add_argument(
        "--from-checkpoint",
        action="store_true",
        help="write the zoo folder from <output>/checkpoint/ (a stopped run) and evaluate it",
    )
    return parser.parse_args(argv)


@torch.no_grad()
def probe(model: LLaDAModelLM, task: RecallTask, count: int = 16) -> float:
    """Exact match with stepwise decoding on ``count`` full-length prompts (a cheap progress check)."""
    return stepwise_exact_match(model, task, count, task.gen_length, task.mask, seed=999)


def evaluate_into_manifest(model: LLaDAModelLM, task: RecallTask, manifest: dict, eval_count: int) -> dict:
    block_lengths = sorted({task.gen_length, task.gen_length // 4}, reverse=True)
    return exact_match_into_manifest(model, task, manifest, eval_count, block_lengths, task.mask)


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.evaluate_only:
        return evaluate_only(args, MODULE, load_recorded, evaluate_recorded)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    task = build_task(args)
    model = build_model(args, task)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = adamw(model, args.lr)
    checkpoint = Checkpoint(args.output / "checkpoint")
    start_step, recent, elapsed = 0, [], 0.0
    cap, accuracies = float(args.curriculum_start), []
    if args.resume or args.from_checkpoint:
        start_step = checkpoint.load(model, optimizer, generator)
        progress_info = read_json(checkpoint.folder / "progress.json")
        recent, elapsed = progress_info.get("recent_losses", []), progress_info.get("train_time_s", 0.0)
        cap, accuracies = progress_info.get("cap", cap), progress_info.get("recent_accuracies", [])
        logger.info("resumed at step %d (passage cap %.0f)", start_step, cap)
    scheduler = schedule_from(optimizer, args, start_step)
    logger.info(
        "training %s: %d parameters, %d steps, prompt %d + answer %d tokens",
        ZOO_NAME,
        n_params,
        args.steps,
        task.prompt_length,
        task.gen_length,
    )

    started = time.time() - elapsed
    if not args.from_checkpoint:
        for step in range(start_step, args.steps):
            rng = random.Random(args.seed * 1_000_003 + step)  # the length draw depends on the step and cap
            length = curriculum_length(cap, task, rng, args.length_spread)
            prompts, answers = task.batch(args.batch_size, generator, passage_length=length)
            loss, predicted, masked = sft_loss(model, prompts, answers, generator, task.mask, return_predictions=True)
            accuracy = next_symbol_accuracy(predicted, answers, masked)
            recent = (recent + [optimizer_step(model, optimizer, scheduler, loss, step)])[-100:]
            accuracies = (accuracies + [accuracy])[-args.curriculum_window :]
            if step % 10 == 0:
                logger.info(
                    "step %d passage %d loss %.4f next-symbol acc %.3f (mean loss %.4f, mean acc %.3f) %.0f s",
                    step,
                    length,
                    loss.item(),
                    accuracy,
                    sum(recent) / len(recent),
                    sum(accuracies) / len(accuracies),
                    time.time() - started,
                )
            if (step + 1) % args.curriculum_window == 0:
                grown = next_cap(cap, accuracies, args, task)
                if grown != cap:
                    logger.info("step %d: passage cap %.0f -> %.0f", step + 1, cap, grown)
                    cap, accuracies = grown, []
            if (step + 1) % args.probe_every == 0:
                logger.info(
                    "step %d probe: stepwise exact match on 16 full-length prompts %.3f", step + 1, probe(model, task)
                )
            if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.steps:
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
                    },
                )
    train_s = time.time() - started
    final_loss = sum(recent) / max(1, len(recent))
    model.eval()
    steps_done = start_step if args.from_checkpoint else args.steps
    manifest = training_manifest(
        ZOO_NAME,
        MODULE,
        argv,
        args,
        steps_done=steps_done,
        parameters=n_params,
        train_time_s=round(train_s, 1),
        final_loss=final_loss,
        final_loss_definition="mean LLaDA SFT loss over the last 100 training steps (curriculum lengths)",
        final_passage_cap=cap,
    )
    args.output.mkdir(parents=True, exist_ok=True)
    manifest = write_zoo_folder(args.output, model, ZOO_NAME, task_dict(task), manifest)
    logger.info("saved %s (final loss %.5f, %.0f s)", args.output, final_loss, train_s)
    evaluate_into_manifest(model, task, manifest, args.eval_count)
    write_json(args.output / "manifest.json", manifest)
    return manifest


def load_recorded(folder: Path) -> LLaDAModelLM:
    from .zoo import load_recall_model

    return load_recall_model(folder)


def evaluate_recorded(model: LLaDAModelLM, folder: Path, manifest: dict, eval_count: int) -> None:
    """``--evaluate-only``: the evaluation of :func:`main`, on the task the folder records."""
    from .zoo import read_recall_task

    evaluate_into_manifest(model, read_recall_task(folder), manifest, eval_count)


if __name__ == "__main__":
    main()
