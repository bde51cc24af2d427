"""SparseD against dense attention at long context on a CPU (SparseD, arXiv 2509.24014).

For each sequence length a LLaDA-architecture model with random weights (speed only: the pattern
comes from its own queries and keys, as SparseD builds it at step ``t*``) is run:

* attention time: one layer's attention call, dense SDPA vs FlexAttention with the SparseD block
  mask (compiled, ``dynamic=False``; the compile happens in an untimed warm-up);
* end-to-end time per step: one full model forward, dense vs with SparseD's sparse attention.

Each finished length is appended to ``--out`` (JSON lines, written atomically) and skipped when the
script is run again, so a long sweep can resume after an interruption.

    nice python eval/dllm_long_context.py --lengths 1024 2048 4096 8192 16384 --out eval/results/dllm_long_context.jsonl

``--kernel flex gather auto`` measures each kernel (one row each, dense measured once per length):
FlexAttention (official), our CPU kernel ``gather`` (kept key blocks gathered into dense tiles for SDPA,
nothing compiled), and our ``auto`` (gather below ``--auto-tiles-from`` keys, tiles from there).
Times are medians of ``--repeats`` calls, wall and process CPU time (one torch thread by default).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from pathlib import Path

import torch

from diffaccel.core.atomic import atomic_write_text
from diffaccel.dllm.config import LLaDAConfig
from diffaccel.dllm.llada import LLaDAModelLM
from diffaccel.dllm.sampler import DecodeStep
from diffaccel.dllm.sparsed import KERNELS, SparseDConfig, attach_sparsed, detach_sparsed

logger = logging.getLogger("dllm_long_context")


def build_model(args) -> LLaDAModelLM:
    torch.manual_seed(0)
    config = LLaDAConfig(
        d_model=args.d_model,
        n_heads=args.n_heads,
        n_kv_heads=args.n_heads,
        n_layers=args.n_layers,
        mlp_hidden_size=args.mlp,
        vocab_size=1024,
        embedding_size=1024,
        rope_theta=10000.0,
        mask_token_id=1000,
        eos_token_id=1001,
        max_sequence_length=max(args.lengths),
    )
    return LLaDAModelLM(config).eval()


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall time and median process CPU time of ``repeats`` calls (seconds); with one torch thread
    the CPU time is the work done, steadier than wall time when other jobs share the cores."""
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu_start)
    return statistics.median(walls), statistics.median(cpus)


def step_at(index: int, total: int, length: int, gen: int) -> DecodeStep:
    return DecodeStep(
        run_id=length,
        index=index,
        total_steps=total,
        block_index=0,
        step_in_block=index,
        block_start=length - gen,
        block_end=length,
        prompt_length=length - gen,
        gen_length=gen,
        mask_id=1000,
    )


def measure(model, length: int, kernels: list[str], args) -> list[dict]:
    """Dense attention once, then each SparseD kernel, at one sequence length: one row per kernel."""
    gen = args.gen_length
    ids = torch.randint(0, 1000, (1, length))
    ids[:, -gen:] = 1000
    total = 10
    with torch.no_grad():
        dense_forward = timed(lambda: model(ids, decode_step=step_at(0, total, length, gen)), args.repeats)
        # one layer's attention inputs, captured from a real forward
        captured = {}
        attention = model.blocks[0].attention
        handle = attention.register_forward_hook(
            lambda m, a, kw, out: captured.update(
                q=a[0], k=a[1], v=a[2], positions=kw.get("positions", a[3] if len(a) > 3 else None)
            ),
            with_kwargs=True,
        )
        model(ids)
        handle.remove()
        q, k, v, positions = captured["q"], captured["k"], captured["v"], captured["positions"]
        dense_attention = timed(lambda: attention(q, k, v, positions=positions), args.repeats)
        rows = []
        for kernel in kernels:
            config = SparseDConfig(
                skip=args.skip,
                select=args.select,
                block_size=args.block_size,
                compile=True,
                kernel=kernel,
                auto_tiles_from=args.auto_tiles_from,
            )
            t_star = config.pattern_step(total)
            state = attach_sparsed(model, config)
            try:
                build_start = time.perf_counter()
                model(ids, decode_step=step_at(t_star, total, length, gen))  # builds every layer's pattern
                pattern_s = time.perf_counter() - build_start
                sparse_step = step_at(t_star + 1, total, length, gen)
                compile_start = time.perf_counter()
                model(ids, decode_step=sparse_step)  # compiles FlexAttention for this shape
                compile_s = time.perf_counter() - compile_start
                sparse_forward = timed(lambda step=sparse_step: model(ids, decode_step=step), args.repeats)
                hook = attention._diffusers_hook.get_hook("diffaccel.dllm.sparsed_attention")
                state.step = sparse_step
                sparse_attention = timed(lambda hook=hook: hook.sparse(q, k, v), args.repeats)
                state.step = None
                kept = state.kept_fraction()
                fallback = state.fallback_calls
            finally:
                detach_sparsed(model)
            rows.append(
                {
                    "length": length,
                    "gen_length": gen,
                    "d_model": args.d_model,
                    "n_heads": args.n_heads,
                    "n_layers": args.n_layers,
                    "select": args.select,
                    "block_size": args.block_size,
                    "kernel": kernel,
                    "kernel_run": config.kernel_for(length),
                    "auto_tiles_from": args.auto_tiles_from if kernel == "auto" else None,
                    "threads": args.threads,
                    "repeats": args.repeats,
                    "load_average": os.getloadavg()[0],
                    **timing_fields("attention", dense_attention, sparse_attention),
                    **timing_fields("step", dense_forward, sparse_forward),
                    "kept_fraction": kept,
                    "pattern_build_s": pattern_s,
                    "flex_compile_s": compile_s,
                    "dense_fallback_calls": fallback,
                    "torch": torch.__version__,
                }
            )
    return rows


def timing_fields(name: str, dense: tuple[float, float], sparse: tuple[float, float]) -> dict[str, float]:
    """``{name}_dense_s``, ``_sparse_s``, ``_speedup`` (wall) and the same three for CPU time."""
    fields = {}
    for index, unit in ((0, ""), (1, "_cpu")):
        fields[f"{name}_dense{unit}_s"] = dense[index]
        fields[f"{name}_sparse{unit}_s"] = sparse[index]
        fields[f"{name}{unit}_speedup"] = dense[index] / sparse[index]
    return fields


def load_done(path: Path) -> dict[tuple[int, str], dict]:
    if not path.is_file():
        return {}
    done = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            done[row["length"], row.get("kernel", "flex")] = row
    return done


def append_atomic(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text() if path.is_file() else ""
    atomic_write_text(path, existing + json.dumps(row) + "\n")


def table(rows: list[dict]) -> str:
    lines = [
        "| tokens | kernel (runs) | kept blocks | attention dense / sparse (CPU s) | attention CPU speedup | "
        "step dense / sparse (CPU s) | step CPU speedup | step wall speedup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["length"], r.get("kernel", "flex"))):
        kernel = r.get("kernel", "flex")
        ran = r.get("kernel_run", kernel)
        cpu = r.get("step_dense_cpu_s") is not None
        attention = (
            f"{r['attention_dense_cpu_s']:.4f} / {r['attention_sparse_cpu_s']:.4f} | {r['attention_cpu_speedup']:.2f}x"
            if cpu
            else "- | -"
        )
        step = (
            f"{r['step_dense_cpu_s']:.3f} / {r['step_sparse_cpu_s']:.3f} | {r['step_cpu_speedup']:.2f}x"
            if cpu
            else "- | -"
        )
        lines.append(
            f"| {r['length']} | {kernel}{f' ({ran})' if ran != kernel else ''} | {r['kept_fraction']:.2f} | "
            f"{attention} | {step} | {r['step_speedup']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--gen-length", type=int, default=128)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--mlp", type=int, default=512)
    parser.add_argument("--skip", type=float, default=0.2)
    parser.add_argument("--select", type=float, default=0.3)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--kernel", choices=KERNELS, nargs="+", default=["flex"], help="one row per kernel")
    parser.add_argument("--auto-tiles-from", type=int, default=SparseDConfig.auto_tiles_from)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("eval/results/dllm_long_context.jsonl"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    done = load_done(args.out)
    model = build_model(args)
    for length in args.lengths:
        todo = [kernel for kernel in args.kernel if (length, kernel) not in done]
        if not todo:
            logger.info("length %d: already measured, skipping", length)
            continue
        for row in measure(model, length, todo, args):
            append_atomic(args.out, row)
            done[length, row["kernel"]] = row
            logger.info(
                "length %d, %s: attention %.2fx, step %.2fx CPU time",
                length,
                row["kernel"],
                row["attention_cpu_speedup"],
                row["step_cpu_speedup"],
            )
    print(table([done[n, kernel] for n in args.lengths for kernel in args.kernel if (n, kernel) in done]))


if __name__ == "__main__":
    main()
