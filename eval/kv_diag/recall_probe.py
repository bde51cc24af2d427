"""Does free-cue passage recall (an induction lookup) form in a small model? (ours, a diagnosis)

Trains on :class:`diffaccel.dllm.tasks.recall.RecallTask` with a random cue position (the zoo's
``llada-recall`` fixes it at 0, which makes the task a fixed-distance copy) and prints, per window of steps,
the task's progress accuracy: masked answer tokens whose left neighbour is visible, the single lookup
left-to-right decoding needs. Same loss (``sft_loss``), optimiser and schedule as the dLLM trainings;
``--plain`` swaps in ``differential.py``'s ``nn.TransformerEncoder`` with learned absolute positions.

    OMP_NUM_THREADS=1 python eval/kv_diag/recall_probe.py --symbols 64 --passage 24 --gen-length 8 --steps 2000
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch
from differential import PlainEncoder

from diffaccel.dllm.tasks.recall import RecallTask
from diffaccel.dllm.training import adamw, add_position_arguments, lr_factor, sft_loss, tiny_llada


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=64, help="symbol vocabulary (the zoo task: 512)")
    p.add_argument("--passage", type=int, default=24, help="passage symbols (distinct)")
    p.add_argument("--gen-length", type=int, default=8)
    p.add_argument("--plain", action="store_true", help="nn.TransformerEncoder + learned positions, not tiny_llada")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    add_position_arguments(p)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    task = RecallTask(passage_length=a.passage, gen_length=a.gen_length, n_symbols=a.symbols)
    if a.plain:
        model = PlainEncoder(
            task.vocab_size, a.d_model, a.heads, a.layers, 2 * a.d_model, max_len=task.prompt_length + a.gen_length
        )
    else:
        sizes = SimpleNamespace(
            d_model=a.d_model,
            n_heads=a.heads,
            n_layers=a.layers,
            ff=2 * a.d_model,
            **{k: getattr(a, k) for k in ("positions", "max_positions", "rope_theta")},
        )
        model = tiny_llada(sizes, task.vocab_size, task.mask, task.eos, task.bos)
    opt = adamw(model, a.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, 50, a.steps))
    accs, t0 = [], time.time()
    for step in range(a.steps):
        prompts, answers = task.batch(a.batch, g)
        loss, pred, masked = sft_loss(model, prompts, answers, g, task.mask, return_predictions=True)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        accs.append(task.progress_accuracy(pred, answers, masked))
        if (step + 1) % a.window == 0:
            mean = sum(accs[-a.window :]) / a.window
            print(f"step {step + 1} loss {loss.item():.3f} progress {mean:.3f} {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
