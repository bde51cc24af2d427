"""What the block windows (``logits_range``, ours) buy stepwise decoding and SSD, in process CPU time.

The reference loop without a strategy keeps the official full-length forward; ``pipe.sampler.logits_window``
asks the model for the current block's logits only (on whenever a K/V cache or SSD is wrapped). This times, on
the same held-out prompts of a dLLM zoo model at its default sampling, one pipeline call each of

* stepwise decoding with the full-length forward (the official loop),
* stepwise decoding with block windows,
* ``ssd`` (wrapped, hence with windows),

fastest of ``--repeats`` calls, one torch thread, and checks that all three give the same tokens. So SSD is
compared with stepwise decoding both as the official loop runs it and with the same saving::

    OMP_NUM_THREADS=1 nice -n 10 python eval/dllm_logits_window.py --model llada-recall --prompts 16 \
        --out docs/dllm/results/logits-window-b16.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import diffaccel
from diffaccel import zoo
from diffaccel.core.atomic import atomic_write_text


def fastest(call, repeats: int):
    """Least process CPU time of ``repeats`` calls, and the last call's generated tokens."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        out = call()
        best = min(best, time.process_time() - start)
    return best, out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="llada-recall")
    parser.add_argument("--prompts", type=int, default=16, help="held-out prompts, one batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ssd", default="ssd", help="the SSD spec to wrap")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = zoo.load(args.model)
    ids, _ = pipe.task.held_out(args.prompts, seed=args.seed)

    def call():
        return pipe(input_ids=ids).generated

    full, reference = fastest(call, args.repeats)
    pipe.sampler.logits_window = True
    try:
        windowed, windowed_tokens = fastest(call, args.repeats)
    finally:
        pipe.sampler.logits_window = False
    diffaccel.wrap(pipe, args.ssd)
    try:
        ssd, ssd_tokens = fastest(call, args.repeats)
    finally:
        diffaccel.unwrap(pipe)
    result = {
        "model": args.model,
        "prompts": args.prompts,
        "seed": args.seed,
        "ssd": args.ssd,
        "threads": args.threads,
        "repeats": args.repeats,
        "load_average": os.getloadavg()[0],
        "stepwise_full_cpu_s": full,
        "stepwise_windows_cpu_s": windowed,
        "ssd_cpu_s": ssd,
        "windows_speedup": full / windowed,
        "ssd_vs_official_stepwise": full / ssd,
        "ssd_vs_windowed_stepwise": windowed / ssd,
        "tokens_identical": bool(torch.equal(windowed_tokens, reference) and torch.equal(ssd_tokens, reference)),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
