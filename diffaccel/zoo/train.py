"""Train a zoo model: ``python -m diffaccel.zoo.train <name> [--steps N] [--seed S] [--out DIR]``.

One seeded command per model writes ``<out>/<name>/model.safetensors``, ``config.json`` and ``manifest.json``
(default ``<out>``: the packaged ``diffaccel/zoo/weights``). The loop is shared by all zoo models; a model
contributes a *recipe* object with ``name, seed, steps, batch_size, learning_rate, warmup_steps, ema_decay``
(optionally ``betas`` and ``weight_decay`` for AdamW, default ``(0.9, 0.999)`` and 0) and the methods
``build() -> {component: module}``, ``loss(components, generator) -> scalar``,
``config(components) -> dict`` and optionally ``parameter_groups(components) -> list[dict]`` (AdamW parameter
groups, e.g. weight decay on weight matrices only) and ``after_training(folder, components) -> dict`` (extra files
and scores recorded in the manifest). The saved weights are the exponential moving average of the trained ones.

``--evaluate-only`` re-scores committed weights (see :func:`refresh`) without training.

Runs on one thread by default (``--threads``) so that it can train in the background next to other work; CI never
trains, it only loads the committed result.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import shlex
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .weights_io import WEIGHTS_ROOT, library_versions, read_json, save_state, sha256_of, write_json

logger = logging.getLogger(__name__)

# The number of final steps whose mean loss is reported as ``final_loss`` (single-batch losses are noisy).
FINAL_LOSS_WINDOW = 200


# zoo name -> (module, recipe class); imported only when that model is trained.
RECIPES = {
    "dit-digits": ("diffaccel.zoo.dit_digits", "DiTDigitsTraining"),
    "flux-photos": ("diffaccel.zoo.flux_photos", "FluxPhotosTraining"),
    "flux-photos-b": ("diffaccel.zoo.flux_photos", "FluxPhotosBTraining"),
    "unet-photos": ("diffaccel.zoo.unet_photos", "UNetPhotosTraining"),
    "pixart-photos": ("diffaccel.zoo.pixart_photos", "PixArtPhotosTraining"),
    "wan-clips": ("diffaccel.zoo.wan_clips", "WanClipsTraining"),
    "dp-reach": ("diffaccel.policy.zoo", "DPReachTraining"),
    "dp-reach-two": ("diffaccel.policy.zoo", "DPReachTwoTraining"),
    "dp-reach-full-attn": ("diffaccel.policy.zoo", "DPReachFullAttnTraining"),
    "dp-reach-two-full-attn": ("diffaccel.policy.zoo", "DPReachTwoFullAttnTraining"),
}


def recipe_class(name: str) -> type:
    import importlib

    module, attribute = RECIPES[name]
    return getattr(importlib.import_module(module), attribute)


def learning_rate_at(step: int, base: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to ``base`` then cosine decay to 10% of ``base`` at ``total_steps``."""
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def reference_ema_decay(step: int, power: float, max_value: float = 0.9999) -> float:
    """The EMA decay of the official Diffusion Policy `EMAModel.get_decay` (inv_gamma 1, min_value 0,
    update_after_step 0) at the update after optimiser step ``step`` (0-based): 0 for the first two updates,
    then ``1 − step^(−power)`` capped at ``max_value`` (power 0.75 reaches 0.998 at step 3,969)."""
    k = max(0, step - 1)
    return 0.0 if k <= 0 else min(max_value, 1.0 - (1 + k) ** -power)


def ema_decay_at(recipe, step: int) -> float:
    """A recipe with ``ema_power`` (not None) uses the reference's warm-up schedule; the others a constant
    ``ema_decay`` after the learning-rate warm-up (0 before it, i.e. the EMA copies the weights)."""
    power = getattr(recipe, "ema_power", None)
    if power is not None:
        return reference_ema_decay(step, power)
    return recipe.ema_decay if step >= recipe.warmup_steps else 0.0


@torch.no_grad()
def _update_ema(ema: dict[str, torch.nn.Module], live: dict[str, torch.nn.Module], decay: float) -> None:
    for name, module in live.items():
        for ema_param, param in zip(ema[name].parameters(), module.parameters()):
            ema_param.lerp_(param, 1.0 - decay)


def make_optimizer(recipe, components: dict, parameters: list) -> torch.optim.AdamW:
    """AdamW over ``recipe.parameter_groups(components)`` if the recipe defines it, else over all parameters in one
    group; ``betas`` / ``weight_decay`` from the recipe when it sets them (a recipe without them gets exactly the
    optimiser the zoo always used: default betas, no weight decay)."""
    groups = recipe.parameter_groups(components) if hasattr(recipe, "parameter_groups") else parameters
    grouped = [p for group in groups for p in group["params"]] if hasattr(recipe, "parameter_groups") else groups
    if len(grouped) != len(parameters) or {id(p) for p in grouped} != {id(p) for p in parameters}:
        raise ValueError(f"{recipe.name}: parameter_groups must hold every trained parameter exactly once")
    return torch.optim.AdamW(
        groups,
        lr=recipe.learning_rate,
        betas=tuple(getattr(recipe, "betas", (0.9, 0.999))),
        weight_decay=getattr(recipe, "weight_decay", 0.0),
    )


def train(recipe, out_root: str | Path | None = None, command: str | None = None) -> dict:
    """Run ``recipe`` to completion and write its files; returns the manifest."""
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    components = recipe.build()
    for module in components.values():
        module.train()
    ema = {name: copy.deepcopy(module).eval().requires_grad_(False) for name, module in components.items()}
    parameters = [p for module in components.values() for p in module.parameters()]
    optimizer = make_optimizer(recipe, components, parameters)
    num_parameters = {name: sum(p.numel() for p in module.parameters()) for name, module in components.items()}
    logger.info("training %s: %s parameters, %d steps", recipe.name, num_parameters, recipe.steps)

    losses: list[float] = []
    start = time.perf_counter()
    progress = tqdm(range(recipe.steps), desc=f"train {recipe.name}", mininterval=10)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, recipe.learning_rate, recipe.warmup_steps, recipe.steps)
        loss = recipe.loss(components, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        _update_ema(ema, components, ema_decay_at(recipe, step))
        losses.append(loss.item())
        if step % 100 == 0 or step == recipe.steps - 1:
            window = losses[-100:]
            progress.set_postfix(loss=f"{sum(window) / len(window):.4f}")
    train_wall_s = time.perf_counter() - start

    folder = Path(out_root or WEIGHTS_ROOT) / recipe.name
    folder.mkdir(parents=True, exist_ok=True)
    save_state(folder / "model.safetensors", ema)
    write_json(folder / "config.json", recipe.config(ema))
    extra = {}
    if hasattr(recipe, "after_training"):
        after_start = time.perf_counter()
        extra = recipe.after_training(folder, ema)
        extra["after_training_wall_s"] = round(time.perf_counter() - after_start, 1)

    final_window = losses[-FINAL_LOSS_WINDOW:]
    files = sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and p.suffix in {".safetensors", ".json"} and p.name != "manifest.json"
    )
    manifest = {
        "name": recipe.name,
        "command": command or f"python -m diffaccel.zoo.train {recipe.name}",
        "seed": recipe.seed,
        "steps": recipe.steps,
        "batch_size": recipe.batch_size,
        "learning_rate": recipe.learning_rate,
        "ema_decay": recipe.ema_decay,
        **({"ema_power": recipe.ema_power} if getattr(recipe, "ema_power", None) is not None else {}),
        "torch_threads": torch.get_num_threads(),
        "train_wall_s": round(train_wall_s, 1),
        "final_loss": round(sum(final_window) / len(final_window), 5),
        "final_loss_definition": f"mean training loss over the last {len(final_window)} steps",
        "first_loss": round(losses[0], 5),
        "parameters": num_parameters,
        "metrics": extra,
        "sha256": {name: sha256_of(folder / name) for name in files},
        "versions": library_versions(),
    }
    write_json(folder / "manifest.json", manifest)
    logger.info("wrote %s (train %.0f s, final loss %.4f)", folder, train_wall_s, manifest["final_loss"])
    return manifest


def refresh(recipe, out_root: str | Path | None = None, command: str | None = None) -> dict:
    """Re-evaluate already trained weights without training: rewrite the ``"pipeline"`` section of ``config.json``
    from the current recipe (for example a new default guidance scale), run ``recipe.evaluate(folder)`` if it
    exists, and update the manifest's metrics and sha256 list. The training record (seed, steps, losses, wall
    time) is kept; the re-evaluation is recorded under ``"evaluation"``."""
    folder = Path(out_root or WEIGHTS_ROOT) / recipe.name
    manifest = read_json(folder / "manifest.json")
    start = time.perf_counter()
    if hasattr(recipe, "pipeline_config"):
        config = read_json(folder / "config.json")
        config["pipeline"] = recipe.pipeline_config()
        write_json(folder / "config.json", config)
    metrics = dict(manifest.get("metrics", {}))
    if hasattr(recipe, "evaluate"):
        metrics.update(recipe.evaluate(folder))
    manifest["metrics"] = metrics
    manifest["evaluation"] = {
        "command": command or f"python -m diffaccel.zoo.train {recipe.name} --evaluate-only",
        "wall_s": round(time.perf_counter() - start, 1),
        "versions": library_versions(),
    }
    manifest["sha256"] = {name: sha256_of(folder / name) for name in sorted(manifest["sha256"])}
    write_json(folder / "manifest.json", manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffaccel.zoo.train", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--steps", type=int, help="override the recipe's number of optimiser steps")
    parser.add_argument("--seed", type=int, help="override the recipe's seed")
    parser.add_argument("--out", help="root folder for the weights (default: the packaged diffaccel/zoo/weights)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, for background training)")
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="do not train: refresh config.json's pipeline section and the manifest's metrics",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    recipe = recipe_class(args.name)()
    if args.steps is not None:
        recipe.steps = args.steps
    if args.seed is not None:
        recipe.seed = args.seed
    command = "python -m diffaccel.zoo.train " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    if args.evaluate_only:
        manifest = refresh(recipe, args.out, command=command)
        print(f"{manifest['name']}: metrics {manifest['metrics']}")
        return 0
    manifest = train(recipe, args.out, command=command)
    print(
        f"{manifest['name']}: final loss {manifest['final_loss']}, train {manifest['train_wall_s']} s, "
        f"metrics {manifest['metrics']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
