"""Benchmark: bytes each strategy's caches hold at their peak, per zoo model, with the figure at FLUX.1-dev size.

Each zoo model runs one call (one image per call, 10 steps, default guidance) per strategy (HyCa: the
call after its probe call); the figure is
`diffaccel.summary(pipe).peak_cache_bytes` (the most the caches held at once). The FLUX.1-dev column is an
extrapolation, not a measurement: TaylorSeer's cache is (order + 1) factors of every cache unit's output in
`factor_dtype` per guidance context (the tests check this count against the unit outputs exactly), so for
flux-photos we divide the measured bytes by the elements its cache units output in one call and multiply by
the elements FLUX.1-dev's units output at 1024x1024 (4096 image + 512 text tokens, width 3072, 19 double
blocks caching image and text attention and feed-forward outputs, 38 single blocks caching `proj_out`;
at "stack" granularity the residual of both streams; one context, since FLUX.1-dev is guidance-distilled).

    OMP_NUM_THREADS=1 python eval/cache_memory.py --out eval/results/cache_memory.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import diffaccel
from diffaccel import zoo

MODELS = ["flux-photos", "dit-digits", "unet-photos", "wan-clips"]
STRATEGIES = [
    "taylorseer:interval=5,order=1",
    "taylorseer:interval=5,order=2",
    "taylorseer:interval=5,order=1,factor_dtype=bfloat16",
    "taylorseer:interval=5,granularity=stack",
    "hyca:interval=5",
    "taocache",
]
FLUX_DEV = dict(double=19, single=38, image_tokens=4096, text_tokens=512, width=3072)


def flux_dev_elements(granularity: str) -> int:
    """Elements the TaylorSeer cache units of FLUX.1-dev output in one call at 1024x1024 (see docstring)."""
    tokens = FLUX_DEV["image_tokens"] + FLUX_DEV["text_tokens"]
    if granularity == "stack":
        return tokens * FLUX_DEV["width"]
    return (FLUX_DEV["double"] * 2 + FLUX_DEV["single"]) * tokens * FLUX_DEV["width"]


def unit_elements(pipe, spec: str) -> int:
    """Elements the cache units of `spec` output in one denoiser call (plain torch hooks, batch of one)."""
    diffaccel.wrap(pipe, spec)
    engine = next(iter(diffaccel.api.engines(pipe).values()))
    names = [h.name for h in engine.unit_hooks]
    root = engine.root
    diffaccel.unwrap(pipe)
    seen: dict[str, int] = {}
    handles = []
    for name in names:

        def hook(module, args, out, name=name):
            leaves = out if isinstance(out, tuple) else (out,)
            seen[name] = sum(t[:1].numel() for t in leaves if isinstance(t, torch.Tensor))

        handles.append((root if name == "model" else root.get_submodule(name)).register_forward_hook(hook))
    try:
        with torch.no_grad():
            pipe(num_inference_steps=2, class_labels=[0], generator=torch.Generator().manual_seed(0))
    finally:
        for h in handles:
            h.remove()
    return sum(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="eval/results/cache_memory.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for model in MODELS:
        pipe = zoo.load(model)
        for spec in STRATEGIES:
            try:
                diffaccel.wrap(pipe, spec)
            except diffaccel.UnsupportedModelError as error:  # e.g. no block stack on UNets
                rows.append({"model": model, "strategy": spec, "peak_cache_bytes": None, "note": str(error)[:120]})
                continue
            for _ in range(2 if spec.startswith("hyca") else 1):  # HyCa: its first call is the probe
                with torch.no_grad():
                    pipe(num_inference_steps=10, class_labels=[0], generator=torch.Generator().manual_seed(0))
            summary = diffaccel.summary(pipe)
            diffaccel.unwrap(pipe)
            row = {
                "model": model,
                "strategy": spec,
                "peak_cache_bytes": summary.peak_cache_bytes,
                "contexts": summary.contexts,
            }
            if (
                model == "flux-photos"
                and spec.startswith("taylorseer")
                or (model == "flux-photos" and spec.startswith("hyca"))
            ):
                granularity = "stack" if "stack" in spec else "modules"  # HyCa caches the same units
                per_element = summary.peak_cache_bytes / unit_elements(pipe, spec) / len(summary.contexts)
                row["bytes_per_cached_element_per_context"] = per_element
                row["flux_dev_1024_bytes_extrapolated"] = per_element * flux_dev_elements(granularity)
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).write_text(
        json.dumps({"command": "python eval/cache_memory.py", "steps": 10, "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
