"""Where SSD's CPU time goes: process CPU time inside the transformer versus the rest of the decoding loop.

Runs the ``llada-addition`` zoo pipeline on held-out sums, stepwise and with ``ssd``, and times the
model's inner forward (``model.body``) with ``time.process_time`` through a forward hook pair::

    nice python eval/dllm_ssd_profile.py --prompts 64 --draft-length 4 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import torch

import diffaccel
from diffaccel import zoo


def cpu_split(pipe, ids, sampling: dict, repeats: int) -> tuple[float, float]:
    """(total, inside the transformer) process CPU seconds of ``repeats`` calls, after one warm-up call."""
    inside = [0.0]
    started: list[float] = []
    body = pipe.model.body
    pre = body.register_forward_pre_hook(lambda module, args: started.append(time.process_time()))
    post = body.register_forward_hook(
        lambda module, args, out: inside.__setitem__(0, inside[0] + time.process_time() - started.pop())
    )
    try:
        pipe(input_ids=ids, **sampling)
        inside[0] = 0.0
        start = time.process_time()
        for _ in range(repeats):
            pipe(input_ids=ids, **sampling)
        return time.process_time() - start, inside[0]
    finally:
        pre.remove()
        post.remove()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64, help="sums per call (the batch)")
    parser.add_argument("--draft-length", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = zoo.load("llada-addition")
    ids, _ = pipe.task.held_out(args.prompts, seed=2024)
    g = pipe.task.gen_length
    sampling = dict(gen_length=g, steps=g, block_length=g)
    print("| decoding | CPU s | in the transformer (s) | share |")
    print("|---|---|---|---|")
    total, inside = cpu_split(pipe, ids, sampling, args.repeats)
    print(f"| stepwise | {total:.3f} | {inside:.3f} | {inside / total:.0%} |")
    diffaccel.wrap(pipe, "ssd", draft_length=args.draft_length)
    try:
        total, inside = cpu_split(pipe, ids, sampling, args.repeats)
    finally:
        diffaccel.unwrap(pipe)
    print(f"| ssd:draft_length={args.draft_length} | {total:.3f} | {inside:.3f} | {inside / total:.0%} |")


if __name__ == "__main__":
    main()
