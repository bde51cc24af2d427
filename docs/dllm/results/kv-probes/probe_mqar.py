"""Probe (kept for the record, see README.md): MQAR with LLaDA's SFT loss at a fixed number of records; --same / --copy
vary the rows. Run with PYTHONPATH=<repo> OMP_NUM_THREADS=1."""

import argparse
import time

import torch

from diffaccel.dllm.tasks.kv import KeyValueTask
from diffaccel.dllm.training import adamw, optimizer_step, schedule_from, sft_loss, tiny_llada

p = argparse.ArgumentParser()
p.add_argument("--d-model", type=int, default=128)
p.add_argument("--n-layers", type=int, default=2)
p.add_argument("--n-heads", type=int, default=4)
p.add_argument("--ff", type=int, default=256)
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--warmup", type=int, default=50)
p.add_argument("--steps", type=int, default=3000)
p.add_argument("--n", type=int, default=32)
p.add_argument("--bs", type=int, default=32)
p.add_argument("--init", type=float, default=0.0)
p.add_argument("--same", type=int, default=0)
p.add_argument("--copy", type=float, default=0.0)
a = p.parse_args()
torch.set_num_threads(1)
torch.manual_seed(0)
task = KeyValueTask()
m = tiny_llada(a, task.vocab_size, task.mask, task.eos, task.bos)
if a.init:
    for mod in m.modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)):
            torch.nn.init.normal_(mod.weight, std=a.init)
opt = adamw(m, a.lr)
sch = schedule_from(opt, a, 0)
g = torch.Generator().manual_seed(0)
t0 = time.time()
accs = []
for s in range(a.steps):
    pr, an = task.batch(a.bs, g, size=a.n)
    if a.copy:
        rows = torch.rand(a.bs, generator=g) < a.copy
        pr[rows, -33] = task.eos  # the copy rows' separator
        an[rows] = pr[rows, -32:]
    if a.same:
        pr[:, -32:] = pr[:, -32:-31]
        an[:] = an[:, :1]
    loss, pred, masked = sft_loss(m, pr, an, g, task.mask, return_predictions=True)
    optimizer_step(m, opt, sch, loss, s)
    accs.append(((pred == an) & masked).sum().item() / max(1, masked.sum().item()))
    if s % 20 == 0:
        print(
            s, f"loss {loss.item():.3f} acc {sum(accs[-20:]) / len(accs[-20:]):.3f} {time.time() - t0:.0f}s", flush=True
        )
