"""SparseD against dense attention at long context on a CPU (SparseD, arXiv 2509.24014).

For each sequence length a LLaDA-architecture model with random weights (speed only: the pattern
comes from its own queries and keys, as SparseD builds it at step ``t*``) is run:

* attention time: one layer's attention call, dense SDPA vs FlexAttention with the SparseD block
  mask (compiled, ``dynamic=False``; the compile happens in an untimed warm-up);
* end-to-end time per step: one full model forward, dense vs with SparseD's sparse attention.

Each finished length is appended to ``--out`` (JSON lines, written atomically) and skipped when the
script is run again, so a long sweep can resume after an interruption.

    nice python eval/dllm_long_context.py --lengths 1024 2048 4096 8192 16384 --out eval/results/dllm_long_context.jsonl

``--kernel gather`` measures our CPU kernel (kept key blocks gathered into dense tiles for SDPA, nothing
compiled) instead of FlexAttention.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from diffaccel.core.atomic import atomic_write_text
from diffaccel.dllm.config import LLaDAConfig
from diffaccel.dllm.llada import LLaDAModelLM
from diffaccel.dllm.sampler import DecodeStep
from diffaccel.dllm.sparsed import SparseDConfig, attach_sparsed, detach_sparsed

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


def timed(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls (seconds)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


def measure(model, length: int, args) -> dict:
    gen = args.gen_length
    ids = torch.randint(0, 1000, (1, length))
    ids[:, -gen:] = 1000
    config = SparseDConfig(
        skip=args.skip, select=args.select, block_size=args.block_size, compile=True, kernel=args.kernel
    )
    total, t_star = 10, config.pattern_step(10)
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

        state = attach_sparsed(model, config)
        try:
            build_start = time.perf_counter()
            model(ids, decode_step=step_at(t_star, total, length, gen))  # builds every layer's pattern
            pattern_s = time.perf_counter() - build_start
            sparse_step = step_at(t_star + 1, total, length, gen)
            compile_start = time.perf_counter()
            model(ids, decode_step=sparse_step)  # compiles FlexAttention for this shape
            compile_s = time.perf_counter() - compile_start
            sparse_forward = timed(lambda: model(ids, decode_step=sparse_step), args.repeats)
            hook = attention._diffusers_hook.get_hook("diffaccel.dllm.sparsed_attention")
            state.step = sparse_step
            sparse_attention = timed(lambda: hook.sparse(q, k, v), args.repeats)
            state.step = None
            kept = state.kept_fraction()
            fallback = state.fallback_calls
        finally:
            detach_sparsed(model)
    return {
        "length": length,
        "gen_length": gen,
        "d_model": args.d_model,
        "n_heads": args.n_heads,
        "n_layers": args.n_layers,
        "select": args.select,
        "block_size": args.block_size,
        "kernel": args.kernel,
        "threads": args.threads,
        "attention_dense_s": dense_attention,
        "attention_sparse_s": sparse_attention,
        "attention_speedup": dense_attention / sparse_attention,
        "step_dense_s": dense_forward,
        "step_sparse_s": sparse_forward,
        "step_speedup": dense_forward / sparse_forward,
        "kept_fraction": kept,
        "pattern_build_s": pattern_s,
        "flex_compile_s": compile_s,
        "dense_fallback_calls": fallback,
        "torch": torch.__version__,
    }


def load_done(path: Path) -> dict[int, dict]:
    if not path.is_file():
        return {}
    done = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            done[row["length"]] = row
    return done


def append_atomic(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text() if path.is_file() else ""
    atomic_write_text(path, existing + json.dumps(row) + "\n")


def table(rows: list[dict]) -> str:
    lines = [
        "| tokens | kept blocks | attention dense (s) | attention SparseD (s) | attention speedup | "
        "step dense (s) | step SparseD (s) | step speedup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["length"]):
        lines.append(
            f"| {r['length']} | {r['kept_fraction']:.2f} | {r['attention_dense_s']:.4f} | "
            f"{r['attention_sparse_s']:.4f} | {r['attention_speedup']:.2f}x | {r['step_dense_s']:.3f} | "
            f"{r['step_sparse_s']:.3f} | {r['step_speedup']:.2f}x |"
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
    parser.add_argument("--kernel", choices=("flex", "gather"), default="flex")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("eval/results/dllm_long_context.jsonl"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    done = load_done(args.out)
    model = build_model(args)
    for length in args.lengths:
        if length in done:
            logger.info("length %d: already measured, skipping", length)
            continue
        row = measure(model, length, args)
        append_atomic(args.out, row)
        done[length] = row
        logger.info("length %d: attention %.2fx, step %.2fx", length, row["attention_speedup"], row["step_speedup"])
    print(table([done[n] for n in args.lengths if n in done]))


if __name__ == "__main__":
    main()
