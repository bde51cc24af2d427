"""Command lines behind the `policies/` scripts: evaluate a policy with any strategy, run one batch of
re-plans and show what the strategy did, calibrate a BAC schedule. Also `python -m diffaccel.policy.cli`."""

from __future__ import annotations

import argparse
import json
import logging
import sys

import torch

logger = logging.getLogger(__name__)


def _load(model: str):
    from .. import zoo

    policy = zoo.load(model)
    if not hasattr(policy, "predict_action"):
        raise SystemExit(f"{model} is not a policy zoo model")
    return policy


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="dp-reach",
        help="policy zoo model (dp-reach, dp-reach-two, dp-reach-full-attn, dp-reach-two-full-attn)",
    )
    parser.add_argument(
        "--strategy",
        default="none",
        help="a diffaccel strategy spec (bac, bac:num_updates=5, taylorseer:interval=5) or none",
    )
    parser.add_argument("--schedule", default=None, help="BAC: a schedule file from calibrate_bac.py")
    parser.add_argument("--scheduler", choices=("ddpm", "ddim"), default="ddpm", help="sampler (default ddpm)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the policy's, 100)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


def _prepare(args):
    import diffaccel

    torch.set_num_threads(args.threads)
    policy = _load(args.model)
    if args.scheduler != "ddpm":
        policy.use_scheduler(args.scheduler)
    if args.strategy != "none":
        options = {"schedule": args.schedule} if args.schedule else {}
        diffaccel.wrap(policy, args.strategy, **options)
    return policy


def evaluate_main(argv: list[str] | None = None) -> int:
    """Success rate of a policy (with a strategy) over batched episodes; prints JSON."""
    parser = argparse.ArgumentParser(description=evaluate_main.__doc__)
    _common(parser)
    parser.add_argument("--env", default=None, help="environment (default: the one the policy was trained on)")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from .evaluate import evaluate

    policy = _prepare(args)
    if args.strategy.startswith("bac") and not args.schedule and "uniform" not in args.strategy:
        _calibrate_on_held_out(policy, args)
    result = evaluate(
        policy, env=args.env or policy.env_name, episodes=args.episodes, seed=args.seed, num_inference_steps=args.steps
    )
    print(json.dumps({"model": args.model, "strategy": args.strategy, **result}, indent=2))
    return 0


def _calibrate_on_held_out(policy, args) -> None:
    """Without a schedule BAC calibrates on its first run: make that a held-out batch, not a scored one."""
    from .envs import ObstacleReach

    env = ObstacleReach(policy.env_name, 16)
    obs = torch.from_numpy(env.reset(10_000))[:, None].repeat(1, policy.config.n_obs_steps, 1)
    policy.predict_action({"obs": obs}, generator=torch.Generator().manual_seed(10_000), num_inference_steps=args.steps)


def run_main(argv: list[str] | None = None) -> int:
    """Plan once for a batch of fresh episodes and print the actions and what the strategy computed."""
    parser = argparse.ArgumentParser(description=run_main.__doc__)
    _common(parser)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import diffaccel

    from .envs import ObstacleReach

    policy = _prepare(args)
    env = ObstacleReach(policy.env_name, args.batch)
    obs = torch.from_numpy(env.reset(args.seed))[:, None].repeat(1, policy.config.n_obs_steps, 1)
    for _run in range(2 if args.strategy.startswith("bac") and not args.schedule else 1):
        out = policy.predict_action(
            {"obs": obs}, generator=torch.Generator().manual_seed(args.seed), num_inference_steps=args.steps
        )
    print(f"actions to execute (first episode), shape {tuple(out['action'].shape)}:")
    print(out["action"][0].numpy().round(4))
    if args.strategy != "none":
        print(diffaccel.summary(policy))
    return 0


def calibrate_main(argv: list[str] | None = None) -> int:
    """Calibrate BAC on a held-out observation batch and save the schedule (JSON)."""
    parser = argparse.ArgumentParser(description=calibrate_main.__doc__)
    parser.add_argument("--model", default="dp-reach")
    parser.add_argument("--out", required=True, help="schedule file to write")
    parser.add_argument("--num-updates", type=int, default=10, help="S, update steps per unit (official default 10)")
    parser.add_argument("--top-blocks", type=int, default=5, help="n, units taking the Bubbling Union (official 5)")
    parser.add_argument("--metric", default="cosine", choices=("cosine", "l1", "l2", "mse"))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=10_000, help="calibration seed (keep it off the evaluation seeds)")
    args = parser.parse_args(argv)
    from .. import bac
    from .envs import ObstacleReach

    torch.set_num_threads(1)
    policy = _load(args.model)
    env = ObstacleReach(policy.env_name, args.batch)
    obs = torch.from_numpy(env.reset(args.seed))[:, None].repeat(1, policy.config.n_obs_steps, 1)
    schedule = bac.calibrate(
        policy,
        path=args.out,
        obs_dict={"obs": obs},
        generator=torch.Generator().manual_seed(args.seed),
        num_inference_steps=args.steps,
        options={"num_updates": args.num_updates, "top_blocks": args.top_blocks, "metric": args.metric},
    )
    print(
        f"wrote {args.out}: {len(schedule.updates)} units, {schedule.computed_fraction():.3f} of unit calls compute; "
        f"union units: {', '.join(schedule.union_units)}"
    )
    return 0


def train_main(argv: list[str] | None = None) -> int:
    """Train a policy zoo model with the zoo's training loop; writes model.safetensors, config.json, manifest.json."""
    import shlex

    from ..zoo.train import train
    from .zoo import ZOO_ENVS, ZOO_RECIPES, PolicyTraining

    parser = argparse.ArgumentParser(description=train_main.__doc__)
    parser.add_argument("name", choices=sorted(ZOO_ENVS))
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demos", type=int, default=None, help="expert demonstrations (default: the recipe's)")
    parser.add_argument("--eval-episodes", type=int, default=200, help="episodes scored after training")
    parser.add_argument("--init-from", default=None, help="continue from the weights in this folder")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--n-emb", type=int, default=None, help="transformer width (default: the recipe's)")
    parser.add_argument("--n-layer", type=int, default=None, help="decoder layers (default: the recipe's, 4)")
    parser.add_argument(
        "--no-causal-attn",
        dest="causal_attn",
        action="store_const",
        const=False,
        default=None,
        help="full attention between action tokens (the reference's causal_attn=False; default: causal)",
    )
    parser.add_argument(
        "--window-starts",
        choices=("reference", "every-step"),
        default=None,
        help="training windows (default: the recipe's, every-step)",
    )
    parser.add_argument("--ema-power", type=float, default=None, help="reference EMA warm-up power (e.g. 0.75)")
    parser.add_argument(
        "--first-window-weight",
        type=float,
        default=None,
        help="ours: oversample each demo's first window (default: the recipe's)",
    )
    parser.add_argument(
        "--turn-window-weight",
        type=float,
        default=None,
        help="ours: oversample the windows around each mid-episode turn to a later obstacle (default: the recipe's)",
    )
    parser.add_argument(
        "--demo-action-noise",
        type=float,
        default=None,
        help="ours, after DART: the expert's executed actions get this Gaussian noise, labels stay clean "
        "(default: the recipe's)",
    )
    parser.add_argument("--weight-init", choices=("ours", "reference"), default=None, help="initialisation")
    parser.add_argument("--out", default=None, help="weights root (default: the packaged diffaccel/zoo/weights)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    defaults = ZOO_RECIPES[args.name]
    options = (
        ("steps", args.steps),
        ("demos", args.demos),
        ("learning_rate", args.lr),
        ("n_emb", args.n_emb),
        ("n_layer", args.n_layer),
        ("causal_attn", args.causal_attn),
        ("window_starts", args.window_starts),
        ("ema_power", args.ema_power),
        ("weight_init", args.weight_init),
        ("first_window_weight", args.first_window_weight),
        ("turn_window_weight", args.turn_window_weight),
        ("demo_action_noise", args.demo_action_noise),
    )
    overrides = {k: v for k, v in options if v is not None}
    recipe = PolicyTraining(
        name=args.name,
        seed=args.seed,
        eval_episodes=args.eval_episodes,
        init_from=args.init_from,
        **{**defaults, **overrides},
    )
    command = "python policies/train.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    manifest = train(recipe, args.out, command=command)
    print(
        f"{manifest['name']}: final loss {manifest['final_loss']}, train {manifest['train_wall_s']} s, "
        f"metrics {manifest['metrics']}"
    )
    return 0


COMMANDS = {"train": train_main, "evaluate": evaluate_main, "run": run_main, "calibrate": calibrate_main}

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        raise SystemExit(f"usage: python -m diffaccel.policy.cli {{{','.join(COMMANDS)}}} ...")
    raise SystemExit(COMMANDS[sys.argv[1]](sys.argv[2:]))
