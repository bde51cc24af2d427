"""SSD against stepwise decoding on CPU: forwards (NFE), rows, process CPU time and where it goes.

Runs a dLLM zoo pipeline (``--model``, default ``llada-addition``) on held-out problems at its default
sampling (one token per step, one block), stepwise and with each ``--ssd`` spec, checks
that the tokens are identical, and times the whole call and the model's inner forward (``model.body``)
with ``time.process_time`` (one thread by default)::

    nice python eval/dllm_ssd_profile.py --prompts 16 --repeats 3 \
        --ssd ssd:draft_length=4 --ssd ssd:draft_length=4,max_verify_rows=16

``--cache prefix|dual`` composes every run, the stepwise reference included, with Fast-dLLM's cache
(``FastDLLMConfig(threshold=None, cache=...)``): SSD is then compared with stepwise decoding with that cache.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import diffaccel
from diffaccel import zoo
from diffaccel.dllm.fast_dllm import FastDLLMConfig


def cpu_split(pipe, ids, sampling: dict, repeats: int):
    """(total, inside the transformer) process CPU seconds of ``repeats`` calls after one warm-up call,
    and the last call's output."""
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
            out = pipe(input_ids=ids, **sampling)
        return time.process_time() - start, inside[0], out
    finally:
        pre.remove()
        post.remove()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="llada-addition", help="a dLLM zoo model (its task gives the problems)")
    parser.add_argument("--prompts", type=int, default=16, help="problems per call (the batch)")
    parser.add_argument("--ssd", action="append", help="an ssd spec (repeatable); default ssd:draft_length=4")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", choices=("none", "prefix", "dual"), default="none")
    args = parser.parse_args(argv)
    cache = [] if args.cache == "none" else [FastDLLMConfig(threshold=None, cache=args.cache)]
    torch.set_num_threads(args.threads)
    pipe = zoo.load(args.model)
    ids, _ = pipe.task.held_out(args.prompts, seed=2024)
    g = pipe.task.gen_length
    sampling = dict(gen_length=g, steps=g, block_length=g)
    print(
        f"{args.model}, prompt {ids.shape[1]} tokens, batch {args.prompts}, {args.threads} thread(s), "
        f"{args.repeats} calls each, gen_length {g}, cache {args.cache}, load average {os.getloadavg()[0]:.1f}"
    )
    print("| decoding | NFE | rows | query tokens | CPU s | in the transformer | NFE ratio | CPU-time ratio | tokens |")
    print("|---|---|---|---|---|---|---|---|---|")
    if cache:
        diffaccel.wrap(pipe, cache)
    try:
        total0, inside0, ref = cpu_split(pipe, ids, sampling, args.repeats)
    finally:
        if cache:
            diffaccel.unwrap(pipe)
    nfe0 = ref.record.forward_calls
    print(
        f"| stepwise | {nfe0} | {ref.record.forward_rows} | {ref.record.query_tokens} | {total0:.3f} | "
        f"{inside0 / total0:.0%} | 1 | 1 | - |"
    )
    for spec in args.ssd or ["ssd:draft_length=4"]:
        diffaccel.wrap(pipe, [spec, *cache])
        try:
            total, inside, out = cpu_split(pipe, ids, sampling, args.repeats)
        finally:
            diffaccel.unwrap(pipe)
        same = "identical" if torch.equal(out.sequences, ref.sequences) else "DIFFERENT"
        nfe = out.record.forward_calls
        print(
            f"| {spec} | {nfe} | {out.record.forward_rows} | {out.record.query_tokens} | {total:.3f} | "
            f"{inside / total:.0%} | "
            f"{nfe / nfe0:.2f} | {total / total0:.2f} | {same} |"
        )


if __name__ == "__main__":
    main()
