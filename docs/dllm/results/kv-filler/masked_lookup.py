"""Lookup accuracy of a kv-filler checkpoint with the whole answer masked (no elimination possible).

One forward per row with all answer slots masked; the share of answer tokens whose argmax is right. With the
answer hidden, the only way above about 1/records is the content lookup. Arguments: the run's trainer flags
(they rebuild the task and model) with ``--output`` the run's folder, e.g.

    PYTHONPATH=<repo> OMP_NUM_THREADS=1 python masked_lookup.py --task kv ... --output <run folder>
"""

import sys

import torch

from diffaccel.dllm.train_recall import build_model, build_task, parse_args
from diffaccel.dllm.training import Checkpoint, adamw


@torch.no_grad()
def masked_lookup_accuracy(model, task, fillers: int, rows: int = 64) -> float:
    prompts, answers = task.batch(rows, torch.Generator().manual_seed(4321), size=fillers)
    x = torch.cat([prompts, torch.full_like(answers, task.mask)], dim=1)
    predicted = model(x).logits[:, -task.gen_length :].argmax(-1)
    return (predicted == answers).float().mean().item()


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    task = build_task(args)
    model = build_model(args, task)
    step = Checkpoint(args.output / "checkpoint").load(model, adamw(model, args.lr), torch.Generator())
    model.eval()
    for fillers in (8, task.size):
        accuracy = masked_lookup_accuracy(model, task, fillers)
        print(f"step {step}, {fillers} fillers, whole answer masked: {accuracy:.3f}")
