"""Diagnose a checkpoint: copy-row accuracy and lookup accuracy (whole answer masked) at given sizes."""
import sys, argparse, torch
from safetensors.torch import load_file
from diffaccel.dllm.tasks.kv import KeyValueTask
from diffaccel.dllm.training import tiny_llada
p = argparse.ArgumentParser()
p.add_argument("folder"); p.add_argument("--records", type=int, default=2); p.add_argument("--keys", type=int, default=4)
p.add_argument("--fillers", type=int, default=0); p.add_argument("--layout", default="pairs"); p.add_argument("--n-heads", type=int, default=4)
p.add_argument("--d-model", type=int, default=128); p.add_argument("--n-layers", type=int, default=2); p.add_argument("--ff", type=int, default=256)
a = p.parse_args()
torch.set_num_threads(1)
task = KeyValueTask(n_records=32, gen_length=32, n_keys=32, n_values=64, n_filler=414, n_filler_symbols=32, layout=a.layout)
m = tiny_llada(a, task.vocab_size, task.mask, task.eos, task.bos)
t = load_file(a.folder + "/checkpoint/state.safetensors")
m.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
m.eval()
g = torch.Generator().manual_seed(7)
with torch.no_grad():
    for copy in (0.0, 1.0):
        pr, an = task.batch(64, g, records=a.records, keys=a.keys, fillers=a.fillers, copy_fraction=copy)
        x = torch.cat([pr, torch.full_like(an, task.mask)], 1)
        pred = m(x).logits[:, pr.shape[1]:].argmax(-1)
        acc = (pred == an).float().mean().item()
        em = (pred == an).all(1).float().mean().item()
        print(f"{'copy' if copy else 'lookup'} rows: token acc {acc:.3f} exact {em:.3f}")
