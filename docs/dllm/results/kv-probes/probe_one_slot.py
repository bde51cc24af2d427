"""Probe (kept for the record, see README.md): one answer slot, always masked, one key queried in all 32 query
slots. Run with PYTHONPATH=<repo> OMP_NUM_THREADS=1."""

import argparse
import time

import torch
import torch.nn.functional as F

from diffaccel.dllm.tasks.kv import KeyValueTask
from diffaccel.dllm.training import adamw, optimizer_step, schedule_from, tiny_llada

p = argparse.ArgumentParser()
p.add_argument("--d-model", type=int, default=128)
p.add_argument("--n-layers", type=int, default=2)
p.add_argument("--n-heads", type=int, default=8)
p.add_argument("--ff", type=int, default=256)
p.add_argument("--lr", type=float, default=3e-3)
p.add_argument("--warmup", type=int, default=50)
p.add_argument("--steps", type=int, default=20000)
p.add_argument("--n", type=int, default=6)
p.add_argument("--bs", type=int, default=16)
a = p.parse_args()
torch.set_num_threads(1)
torch.manual_seed(0)
task = KeyValueTask()
m = tiny_llada(a, task.vocab_size, task.mask, task.eos, task.bos)
opt = adamw(m, a.lr)
sch = schedule_from(opt, a, 0)
g = torch.Generator().manual_seed(0)
t0 = time.time()
accs = []
for s in range(a.steps):
    pr, an = task.batch(a.bs, g, size=a.n)
    pr[:, -32:] = pr[:, -32:-31]
    an = an[:, :1]
    # one answer slot, always masked: the lookup alone (no neighbour to copy)
    x = torch.cat([pr, torch.full_like(an, task.mask)], 1)
    logits = m(x).logits[:, -1]
    loss = F.cross_entropy(logits, an[:, 0])
    optimizer_step(m, opt, sch, loss, s)
    accs.append((logits.argmax(-1) == an[:, 0]).float().mean().item())
    if s % 20 == 0:
        print(
            s, f"loss {loss.item():.3f} acc {sum(accs[-20:]) / len(accs[-20:]):.3f} {time.time() - t0:.0f}s", flush=True
        )
