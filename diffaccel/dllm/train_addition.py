"""Train the ``llada-addition`` / ``dream-addition`` zoo models: tiny diffusion LMs on n-digit addition.

One command, seeded, CPU only::

    nice python -m diffaccel.dllm.train_addition --seed 0                # LLaDA architecture
    nice python -m diffaccel.dllm.train_addition --arch dream --seed 0   # Dream architecture (GQA, shifted logits)

writes ``model.safetensors``, a hub-format ``config.json`` and ``manifest.json`` (command, seed, wall time,
final loss, sha256, exact match with stepwise decoding on a held-out set) to
``diffaccel/zoo/weights/<arch>-addition/``. The loss is the family's SFT loss (:mod:`diffaccel.dllm.training`):
prompt never masked, answer tokens (EOS padding included) masked at a random rate; LLaDA's weighting
for ``--arch llada``, Dream's (shifted logits, ``1/t`` weights, mean over masked tokens) for
``--arch dream``. With ``--checkpoint-every`` a resumable checkpoint is written to ``<output>/checkpoint/``
(``--resume`` continues it with the same options, which the checkpoint records; ``--from-checkpoint`` turns a
stopped run into a zoo folder), and
``--probe-every`` logs the stepwise exact match on 256 held-out prompts during training.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..zoo.weights_io import write_json
from .tasks.addition import BOS, EOS, MASK, VOCAB_SIZE, AdditionTask
from .training import (
    Checkpoint,
    adamw,
    add_checkpoint_arguments,
    evaluate_only,
    exact_match_into_manifest,
    lr_factor,
    model_family,
    optimizer_step,
    resume_progress,
    run_arguments,
    schedule_from,
    sft_loss,
    stepwise_exact_match,
    tiny_dream,
    tiny_llada,
    training_manifest,
    write_zoo_folder,
)

logger = logging.getLogger(__name__)

WEIGHTS = Path(__file__).resolve().parent.parent / "zoo" / "weights"
LOSS_NAMES = {"llada": "LLaDA SFT loss", "dream": "Dream SFT loss (shifted logits, 1/t weights)"}
DEFAULT_OUTPUT = WEIGHTS / "llada-addition"
MODULE = "diffaccel.dllm.train_addition"
BUILDERS = {"llada": tiny_llada, "dream": tiny_dream}

__all__ = ["build_model", "lr_factor", "main", "sft_loss"]


def zoo_name(args: argparse.Namespace) -> str:
    return f"{args.arch}-addition"


def build_model(args: argparse.Namespace):
    return BUILDERS[args.arch](args, VOCAB_SIZE, MASK, EOS, BOS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--arch", choices=sorted(BUILDERS), default="llada", help="model family (zoo name <arch>-addition)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-digits", type=int, default=4)
    parser.add_argument("--gen-length", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=96)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--n-kv-heads", type=int, default=None, help="Dream only: key/value heads (default: n-heads)")
    parser.add_argument("--ff", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 leaves cores to other work)")
    parser.add_argument("--eval-count", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=None, help="default: diffaccel/zoo/weights/<arch>-addition")
    add_checkpoint_arguments(parser, checkpoint_every=0)
    parser.add_argument("--probe-every", type=int, default=0, help="log held-out stepwise exact match (0: never)")
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="only (re)compute the held-out evaluation of the weights in --output and record it",
    )
    args = parser.parse_args(argv)
    if args.n_kv_heads is not None and args.arch != "dream":
        parser.error("--n-kv-heads is a Dream option (the LLaDA twin uses as many key/value heads as query heads)")
    if args.output is None:
        args.output = WEIGHTS / zoo_name(args)
    return args


def evaluate_into_manifest(
    model, task: AdditionTask, manifest: dict, eval_count: int, generator: torch.Generator
) -> dict:
    """Exact match with stepwise decoding on the held-out set, plus the SFT loss of the final weights
    on fresh training-distribution batches (more digits than the rounded training average)."""
    block_lengths = sorted({task.gen_length, max(1, task.gen_length // 2)}, reverse=True)
    exact_match_into_manifest(model, task, manifest, eval_count, block_lengths, MASK)
    with torch.no_grad():
        family = model_family(model)
        losses = [sft_loss(model, *task.batch(512, generator), generator, MASK, family=family).item() for _ in range(4)]
    manifest["eval"]["sft_loss_final_weights"] = sum(losses) / len(losses)
    return manifest


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.evaluate_only:
        module = MODULE if args.arch == "llada" else f"{MODULE} --arch {args.arch}"
        return evaluate_only(args, module, load_recorded, evaluate_recorded)
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    task = AdditionTask(n_digits=args.n_digits, gen_length=args.gen_length)
    name = zoo_name(args)
    model = build_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = adamw(model, args.lr)
    checkpoint = Checkpoint(args.output / "checkpoint", run_arguments(args))
    start_step, progress_info = resume_progress(args, checkpoint, model, optimizer, generator)
    recent, elapsed = progress_info.get("recent_losses", []), progress_info.get("train_time_s", 0.0)
    if start_step:
        logger.info("resumed at step %d", start_step)
    scheduler = schedule_from(optimizer, args, start_step)
    logger.info("training %s: %d parameters, %d steps", name, n_params, args.steps)

    started = time.time() - elapsed
    last_step = start_step if args.from_checkpoint else args.steps
    progress = tqdm(range(start_step, last_step), desc=f"train {name}", mininterval=10)
    for step in progress:
        prompts, answers = task.batch(args.batch_size, generator)
        loss = sft_loss(model, prompts, answers, generator, MASK, family=args.arch)
        recent = (recent + [optimizer_step(model, optimizer, scheduler, loss, step)])[-100:]
        if step % 100 == 0:
            progress.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
        done = step + 1
        if args.probe_every and done % args.probe_every == 0:
            model.eval()
            acc = stepwise_exact_match(model, task, 256, task.gen_length, MASK, seed=999)
            model.train()
            logger.info("step %d: loss %.5f, stepwise exact match on 256 probe prompts %.4f", done, recent[-1], acc)
        if args.checkpoint_every and (done % args.checkpoint_every == 0 or done == args.steps):
            checkpoint.save(
                done, model, optimizer, generator, {"recent_losses": recent, "train_time_s": time.time() - started}
            )
    train_s = time.time() - started
    final_loss = sum(recent) / max(1, len(recent))
    model.eval()

    args.output.mkdir(parents=True, exist_ok=True)
    manifest = training_manifest(
        name,
        MODULE,
        argv,
        args,
        steps_done=last_step,
        parameters=n_params,
        train_time_s=round(train_s, 1),
        final_loss=final_loss,
        final_loss_definition=f"mean {LOSS_NAMES[args.arch]} over the last 100 training steps",
    )
    task_entry = {
        "name": "addition",
        "n_digits": task.n_digits,
        "gen_length": task.gen_length,
        "prompt_length": task.prompt_length,
    }
    manifest = write_zoo_folder(args.output, model, name, task_entry, manifest)
    logger.info("saved %s (final loss %.5f, %.0f s)", args.output / "model.safetensors", final_loss, train_s)

    evaluate_into_manifest(model, task, manifest, args.eval_count, torch.Generator().manual_seed(args.seed + 1))
    write_json(args.output / "manifest.json", manifest)
    return manifest


def load_recorded(folder: Path):
    """The weights of a zoo folder, LLaDA or Dream as its hub config says."""
    from .loading import load_dllm

    return load_dllm(folder)


def evaluate_recorded(model, folder: Path, manifest: dict, eval_count: int) -> None:
    """``--evaluate-only``: the evaluation of :func:`main`, on the task the folder records."""
    from .zoo import read_task

    generator = torch.Generator().manual_seed(manifest.get("seed", 0) + 1)
    evaluate_into_manifest(model, read_task(folder), manifest, eval_count, generator)


if __name__ == "__main__":
    main()
