"""Echo layout: per-value-slot lookup accuracy with the echoed keys visible and the values masked."""
import argparse, torch
from safetensors.torch import load_file
from diffaccel.dllm.tasks.kv import KeyValueTask
from diffaccel.dllm.training import tiny_llada
p = argparse.ArgumentParser()
p.add_argument("folder"); p.add_argument("--g", type=int); p.add_argument("--n-records", type=int, default=4)
p.add_argument("--records", type=int, default=2); p.add_argument("--keys", type=int, default=8); p.add_argument("--fillers", type=int, default=0)
p.add_argument("--n-filler", type=int, default=1)
a = p.parse_args()
a.d_model, a.n_heads, a.n_layers, a.ff = 128, 4, 2, 256
torch.set_num_threads(1)
task = KeyValueTask(n_records=a.n_records, gen_length=a.g, n_keys=32, n_values=64, n_filler=a.n_filler, n_filler_symbols=32, echo=True)
m = tiny_llada(a, task.vocab_size, task.mask, task.eos, task.bos)
t = load_file(a.folder + "/checkpoint/state.safetensors")
m.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")}); m.eval()
with torch.no_grad():
    pr, an = task.batch(256, torch.Generator().manual_seed(7), records=a.records, keys=a.keys, fillers=a.fillers)
    x = torch.cat([pr, an.clone()], 1); x[:, pr.shape[1] + 1 :: 2] = task.mask
    pred = m(x).logits[:, pr.shape[1]:].argmax(-1)
    print("value slots, keys visible:", " ".join(f"{v:.2f}" for v in (pred == an)[:, 1::2].float().mean(0).tolist()))
    x = torch.cat([pr, torch.full_like(an, task.mask)], 1)
    pred = m(x).logits[:, pr.shape[1]:].argmax(-1)
    print("all masked, key slots:", " ".join(f"{v:.2f}" for v in (pred == an)[:, 0::2].float().mean(0).tolist()))
    print("all masked, value slots:", " ".join(f"{v:.2f}" for v in (pred == an)[:, 1::2].float().mean(0).tolist()))
