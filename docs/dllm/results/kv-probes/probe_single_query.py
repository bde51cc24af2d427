"""Probe (kept for the record, see README.md): the simplest recall, --n records and one query right before a single
answer slot, cross-entropy on that slot. Run with PYTHONPATH=<repo> OMP_NUM_THREADS=1."""

import argparse
import time

import torch
import torch.nn.functional as F

from diffaccel.dllm.tasks.kv import KeyValueTask
from diffaccel.dllm.training import adamw, optimizer_step, schedule_from, tiny_llada

p = argparse.ArgumentParser()
p.add_argument("--d-model", type=int, default=128)
p.add_argument("--n-layers", type=int, default=2)
p.add_argument("--n-heads", type=int, default=4)
p.add_argument("--ff", type=int, default=256)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--warmup", type=int, default=50)
p.add_argument("--steps", type=int, default=3000)
p.add_argument("--n", type=int, default=2)
p.add_argument("--bs", type=int, default=64)
p.add_argument("--keys", type=int, default=256)
p.add_argument("--init", type=float, default=0)
a = p.parse_args()
torch.set_num_threads(1)
torch.manual_seed(0)
task = KeyValueTask(n_records=a.n, gen_length=1, n_keys=a.keys, n_values=a.keys)
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
    pr, an = task.batch(a.bs, g)
    x = torch.cat([pr, torch.full_like(an, task.mask)], 1)
    logits = m(x).logits[:, -1]
    loss = F.cross_entropy(logits, an[:, 0])
    optimizer_step(m, opt, sch, loss, s)
    accs.append((logits.argmax(-1) == an[:, 0]).float().mean().item())
    if s % 50 == 0:
        print(
            s, f"loss {loss.item():.3f} acc {sum(accs[-50:]) / len(accs[-50:]):.3f} {time.time() - t0:.0f}s", flush=True
        )
