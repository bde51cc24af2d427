"""Benchmark: wall-clock speedup of TaylorSeer against the unwrapped model, beside the ideal.

A FLUX-architecture `FluxTransformer2DModel` (random weights; speed does not depend on them),
large enough that one forward takes over a second on a 2-core CPU, runs a hand-written
denoising loop of `--steps` steps. For each interval the ideal speedup is steps / full steps;
the measured one is the unwrapped loop's time over the wrapped loop's. Their ratio shows what the
hooks, gates, norms and embeddings that still run on skipped steps cost.

    python eval/overhead.py                      # defaults: 30 steps, intervals 2 3 6, 2 threads
    python eval/overhead.py --threads 1 --granularity stack --out eval/results/overhead-stack.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import diffaccel
from diffaccel.core.atomic import atomic_write_text
from diffaccel.forecast.schedules import taylorseer_full_steps


def build_model(layers: int, single_layers: int, heads: int, head_dim: int) -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=layers,
        num_single_layers=single_layers,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=512,
        pooled_projection_dim=256,
        axes_dims_rope=(head_dim // 4, head_dim // 4 * 3 // 2, head_dim - head_dim // 4 - head_dim // 4 * 3 // 2),
    ).eval()


def make_inputs(side: int, text_tokens: int) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.zeros(side, side, 3)
    ids[..., 1] = torch.arange(side)[:, None]
    ids[..., 2] = torch.arange(side)[None, :]
    return dict(
        hidden_states=torch.randn(1, side * side, 64, generator=g),
        encoder_hidden_states=torch.randn(1, text_tokens, 512, generator=g),
        pooled_projections=torch.randn(1, 256, generator=g),
        img_ids=ids.reshape(-1, 3),
        txt_ids=torch.zeros(text_tokens, 3),
        return_dict=False,
    )


def denoise(model, inputs: dict, steps: int) -> float:
    """Seconds for a loop of `steps` calls with decreasing timesteps (Euler update on the latents)."""
    x = inputs["hidden_states"].clone()
    start = time.perf_counter()
    with torch.no_grad():
        for n in range(steps):
            t = 1.0 - n / steps
            v = model(**{**inputs, "hidden_states": x}, timestep=torch.tensor([t]))[0]
            x = x - v / steps
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--intervals", type=int, nargs="+", default=[2, 3, 6])
    parser.add_argument("--order", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--granularity",
        default="modules",
        choices=["modules", "stack", "model"],
        help="TaylorSeer's cache units: official sub-modules, or the block stack / whole model (ours)",
    )
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--single-layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--side", type=int, default=32, help="image tokens = side²")
    parser.add_argument("--text-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="time unwrapped and wrapped loops this many times each, interleaved; keep the fastest",
    )
    parser.add_argument("--out", type=Path, default=Path("eval/results/overhead.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = build_model(args.layers, args.single_layers, args.heads, args.head_dim)
    inputs = make_inputs(args.side, args.text_tokens)
    params = sum(p.numel() for p in model.parameters())
    denoise(model, inputs, 2)  # warm-up
    one_forward = denoise(model, inputs, 3) / 3
    base = denoise(model, inputs, args.steps)
    print(
        f"FluxTransformer2DModel {params / 1e6:.1f} M params, {args.side**2}+{args.text_tokens} tokens, "
        f"{args.threads} threads: {one_forward:.2f} s per forward, {base:.1f} s for {args.steps} steps unwrapped"
    )

    rows = []
    for interval in args.intervals:
        # Interleave unwrapped and wrapped loops and keep the fastest of each: on a shared machine a
        # single unwrapped loop measured once at the start drifts by ±10 % against later ones.
        bases, walls = [base], []
        for repeat in range(args.repeats):
            if repeat:
                bases.append(denoise(model, inputs, args.steps))
            diffaccel.wrap(
                model,
                "taylorseer",
                interval=interval,
                order=args.order,
                warmup=args.warmup,
                granularity=args.granularity,
            )
            denoise(model, inputs, 2)  # warm-up: FLOPs of every unit are measured on the first call
            diffaccel.new_run(model)
            walls.append(denoise(model, inputs, args.steps))
            stats = diffaccel.summary(model)
            diffaccel.unwrap(model)
        base, wrapped = min(bases), min(walls)
        full = len(taylorseer_full_steps(args.steps, interval, args.warmup))
        assert stats.full_steps == full
        ideal = args.steps / full
        speedup = base / wrapped
        rows.append(
            dict(
                interval=interval,
                order=args.order,
                warmup=args.warmup,
                granularity=args.granularity,
                full_steps=full,
                computed_fraction=stats.computed_fraction,
                wall_s=wrapped,
                base_s=base,
                speedup=speedup,
                ideal=ideal,
                ratio=speedup / ideal,
            )
        )

    print("\n| interval | full steps / steps | computed fraction | wall s | speedup | ideal | speedup / ideal |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['interval']} | {r['full_steps']}/{args.steps} | {r['computed_fraction']:.3f} | {r['wall_s']:.1f} "
            f"| {r['speedup']:.2f}x | {r['ideal']:.2f}x | {r['ratio']:.3f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = dict(
        args={k: str(v) for k, v in vars(args).items()},
        params=params,
        forward_s=one_forward,
        base_s=base,
        rows=rows,
        torch=torch.__version__,
        machine=platform.machine(),
        when=time.strftime("%Y-%m-%d %H:%M:%S"),
    )
    atomic_write_text(args.out, json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
