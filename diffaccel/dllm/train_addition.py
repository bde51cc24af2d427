"""Train the ``llada-addition`` zoo model: a tiny LLaDA-architecture model on n-digit addition.

One command, seeded, CPU only::

    nice python -m diffaccel.dllm.train_addition --seed 0

writes ``model.safetensors``, ``config.json`` and ``manifest.json`` (command, seed, wall time, final
loss, sha256, exact match with stepwise decoding on a held-out set) to
``diffaccel/zoo/weights/llada-addition/``. The loss is LLaDA's SFT loss (:mod:`diffaccel.dllm.training`): prompt never
masked, every answer token (EOS padding included) masked with probability ``p = (1-eps)t + eps``,
cross-entropy of masked tokens divided by ``p`` and by the answer length.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..zoo.weights_io import write_json
from .llada import LLaDAModelLM
from .tasks.addition import BOS, EOS, MASK, VOCAB_SIZE, AdditionTask
from .training import (
    adamw,
    evaluate_only,
    exact_match_into_manifest,
    lr_factor,
    optimizer_step,
    schedule_from,
    sft_loss,
    tiny_llada,
    training_manifest,
    write_zoo_folder,
)

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "zoo" / "weights" / "llada-addition"
MODULE = "diffaccel.dllm.train_addition"

__all__ = ["build_model", "lr_factor", "main", "sft_loss"]


def build_model(args: argparse.Namespace) -> LLaDAModelLM:
    return tiny_llada(args, VOCAB_SIZE, MASK, EOS, BOS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-digits", type=int, default=4)
    parser.add_argument("--gen-length", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=96)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--ff", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 leaves cores to other work)")
    parser.add_argument("--eval-count", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="only (re)compute the held-out evaluation of the weights in --output and record it",
    )
    return parser.parse_args(argv)


def evaluate_into_manifest(
    model: LLaDAModelLM, task: AdditionTask, manifest: dict, eval_count: int, generator: torch.Generator
) -> dict:
    """Exact match with stepwise decoding on the held-out set, plus the SFT loss of the final weights
    on fresh training-distribution batches (more digits than the rounded training average)."""
    block_lengths = sorted({task.gen_length, max(1, task.gen_length // 2)}, reverse=True)
    exact_match_into_manifest(model, task, manifest, eval_count, block_lengths, MASK)
    with torch.no_grad():
        losses = [sft_loss(model, *task.batch(512, generator), generator, MASK).item() for _ in range(4)]
    manifest["eval"]["sft_loss_final_weights"] = sum(losses) / len(losses)
    return manifest


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.evaluate_only:
        return evaluate_only(args, MODULE, load_recorded, evaluate_recorded)
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    task = AdditionTask(n_digits=args.n_digits, gen_length=args.gen_length)
    model = build_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("training llada-addition: %d parameters, %d steps", n_params, args.steps)

    optimizer = adamw(model, args.lr)
    scheduler = schedule_from(optimizer, args, start_step=0)
    start = time.time()
    recent: list[float] = []
    progress = tqdm(range(args.steps), desc="train llada-addition", mininterval=10)
    for step in progress:
        prompts, answers = task.batch(args.batch_size, generator)
        loss = sft_loss(model, prompts, answers, generator, MASK)
        recent = (recent + [optimizer_step(model, optimizer, scheduler, loss, step)])[-100:]
        if step % 100 == 0:
            progress.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
    train_s = time.time() - start
    final_loss = sum(recent) / len(recent)
    model.eval()

    args.output.mkdir(parents=True, exist_ok=True)
    manifest = training_manifest(
        "llada-addition",
        MODULE,
        argv,
        args,
        parameters=n_params,
        train_time_s=round(train_s, 1),
        final_loss=final_loss,
        final_loss_definition="mean LLaDA SFT loss over the last 100 training steps",
    )
    task_entry = {
        "name": "addition",
        "n_digits": task.n_digits,
        "gen_length": task.gen_length,
        "prompt_length": task.prompt_length,
    }
    manifest = write_zoo_folder(args.output, model, "llada-addition", task_entry, manifest)
    weights = args.output / "model.safetensors"
    logger.info("saved %s (final loss %.5f, %.0f s)", weights, final_loss, train_s)

    evaluate_into_manifest(model, task, manifest, args.eval_count, torch.Generator().manual_seed(args.seed + 1))
    write_json(args.output / "manifest.json", manifest)
    return manifest


def load_recorded(folder: Path) -> LLaDAModelLM:
    from .zoo import load_llada_addition_model

    return load_llada_addition_model(folder)


def evaluate_recorded(model: LLaDAModelLM, folder: Path, manifest: dict, eval_count: int) -> None:
    """``--evaluate-only``: the evaluation of :func:`main`, on the task the folder records."""
    from .zoo import read_task

    generator = torch.Generator().manual_seed(manifest.get("seed", 0) + 1)
    evaluate_into_manifest(model, read_task(folder), manifest, eval_count, generator)


if __name__ == "__main__":
    main()
