"""dLLM strategies against the full run on a long prompt, for speed: NFE, tokens/s, speedup.

The model is ``llada-random-long``: a LLaDA-architecture model with random weights and a long prompt (no task;
agreement with the full run is still reported): prompt 512, answer 64, blocks of 32. The task-scored comparison on
the ``llada-addition`` zoo model is ``diffaccel compare --model llada-addition`` (this script's former
``--model llada-addition`` mode).

Every finished strategy is appended to ``--out`` (JSON lines, atomic rewrite) and skipped on a rerun.

    nice python eval/dllm_compare.py --model llada-random-long --prompts 4 --out eval/results/dllm_compare_long.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from diffaccel.core.atomic import atomic_write_text
from diffaccel.dllm import LLaDAPipeline
from diffaccel.dllm.config import LLaDAConfig
from diffaccel.dllm.evaluate import DLLMRunRecord, evaluate_dllm, format_table
from diffaccel.dllm.llada import LLaDAModelLM

STRATEGIES = {
    "llada-random-long": [
        "dkv-cache:refresh_interval=4",
        "dkv-cache:refresh_interval=8",
        "fast-dllm:cache=prefix",
        "fast-dllm:cache=dual",
        "ssd:draft_length=4",
    ],
}


def load(model_name: str, prompts: int):
    torch.manual_seed(0)
    config = LLaDAConfig(
        d_model=256,
        n_heads=4,
        n_kv_heads=4,
        n_layers=4,
        mlp_hidden_size=512,
        vocab_size=1024,
        embedding_size=1024,
        rope_theta=10000.0,
        mask_token_id=1000,
        eos_token_id=1001,
    )
    pipe = LLaDAPipeline(LLaDAModelLM(config).eval())
    ids = torch.randint(0, 1000, (prompts, 512), generator=torch.Generator().manual_seed(1))
    return pipe, ids, None, dict(gen_length=64, steps=64, block_length=32)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def write_rows(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(STRATEGIES), default="llada-random-long")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--strategies", nargs="*", default=None, help="override the model's strategy list")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    pipe, ids, answers, sampling = load(args.model, args.prompts)
    rows = read_rows(args.out)
    done = {r["strategy"] for r in rows}
    reference = None
    for spec in args.strategies or STRATEGIES[args.model]:
        records, reference = evaluate_dllm(
            pipe,
            [spec],
            ids,
            answers,
            sampling=sampling,
            batch_size=args.batch_size,
            repeats=args.repeats,
            reference=reference,
            progress=False,
        )
        for record in records:
            if record.strategy not in done:
                rows.append({"model": args.model, **record.as_dict()})
                done.add(record.strategy)
        write_rows(args.out, rows)
    fields = DLLMRunRecord.__dataclass_fields__
    print(format_table([DLLMRunRecord(**{k: r[k] for k in fields if k in r}) for r in rows]))


if __name__ == "__main__":
    main()
