"""Per-answer-slot lookup accuracy (whole answer masked) of a checkpoint, pairs layout, gen_length G."""
import argparse, torch
from safetensors.torch import load_file
from diffaccel.dllm.tasks.kv import KeyValueTask
from diffaccel.dllm.training import tiny_llada
p = argparse.ArgumentParser()
p.add_argument("folder"); p.add_argument("--g", type=int); p.add_argument("--records", type=int, default=2)
p.add_argument("--keys", type=int, default=32); p.add_argument("--n-heads", type=int, default=4)
p.add_argument("--d-model", type=int, default=128); p.add_argument("--n-layers", type=int, default=2); p.add_argument("--ff", type=int, default=256)
p.add_argument("--n-records", type=int, default=4); p.add_argument("--fillers", type=int, default=0)
a = p.parse_args()
torch.set_num_threads(1)
task = KeyValueTask(n_records=a.n_records, gen_length=a.g, n_keys=32, n_values=64, n_filler=414, n_filler_symbols=32)
m = tiny_llada(a, task.vocab_size, task.mask, task.eos, task.bos)
t = load_file(a.folder + "/checkpoint/state.safetensors")
m.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")}); m.eval()
with torch.no_grad():
    pr, an = task.batch(256, torch.Generator().manual_seed(7), records=a.records, keys=a.keys, fillers=a.fillers)
    x = torch.cat([pr, torch.full_like(an, task.mask)], 1)
    pred = m(x).logits[:, pr.shape[1]:].argmax(-1)
    print("per slot:", " ".join(f"{v:.2f}" for v in (pred == an).float().mean(0).tolist()))
    print("exact:", (pred == an).all(1).float().mean().item())
