"""Checks of a training checkpoint (kept with the logs; run with PYTHONPATH=<repo> OMP_NUM_THREADS=1).

``--mode copy``: token accuracy of lookup rows and of copy rows, whole answer masked (runs D, E, F, I);
``--mode slots``: lookup accuracy per answer slot, whole answer masked (L-g4);
``--mode echo``: echo answers, per value slot, with the echoed keys shown and the values masked (Q-g4).
Model: d 128, 2 layers, 4 heads, ff 256; task: 32 key symbols, 64 values, 32 filler symbols.
"""

import argparse

import torch
from safetensors.torch import load_file

from diffaccel.dllm.tasks.kv import KeyValueTask
from diffaccel.dllm.training import tiny_llada

parser = argparse.ArgumentParser()
parser.add_argument("checkpoint", help="a run's checkpoint folder (holding state.safetensors)")
parser.add_argument("--mode", choices=("copy", "slots", "echo"), required=True)
parser.add_argument("--gen-length", type=int, default=32)
parser.add_argument("--n-records", type=int, default=32)
parser.add_argument("--records", type=int, default=2)
parser.add_argument("--keys", type=int, default=32)
parser.add_argument("--fillers", type=int, default=0)
parser.add_argument("--layout", default="pairs")
parser.add_argument("--n-layers", type=int, default=2)
parser.add_argument("--n-heads", type=int, default=4)
args = parser.parse_args()
args.d_model, args.ff = 128, 256
torch.set_num_threads(1)
task = KeyValueTask(
    n_records=args.n_records,
    gen_length=args.gen_length,
    n_keys=32,
    n_values=64,
    n_filler=max(1, args.fillers),
    n_filler_symbols=32,
    layout=args.layout,
    echo=args.mode == "echo",
)
model = tiny_llada(args, task.vocab_size, task.mask, task.eos, task.bos)
state = load_file(f"{args.checkpoint}/state.safetensors")
model.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})
model.eval()
sizes = {"records": args.records, "keys": args.keys, "fillers": args.fillers}


def predict(prompts: torch.Tensor, answer_input: torch.Tensor) -> torch.Tensor:
    return model(torch.cat([prompts, answer_input], 1)).logits[:, prompts.shape[1] :].argmax(-1)


def row(values: torch.Tensor) -> str:
    return " ".join(f"{v:.2f}" for v in values.tolist())


with torch.no_grad():
    generator = torch.Generator().manual_seed(7)
    if args.mode == "copy":
        for share, name in ((0.0, "lookup rows"), (1.0, "copy rows")):
            prompts, answers = task.batch(64, generator, copy_fraction=share, **sizes)
            right = predict(prompts, torch.full_like(answers, task.mask)) == answers
            print(f"{name}: token acc {right.float().mean():.3f} exact {right.all(1).float().mean():.3f}")
    elif args.mode == "slots":
        prompts, answers = task.batch(256, generator, **sizes)
        right = predict(prompts, torch.full_like(answers, task.mask)) == answers
        print("per slot:", row(right.float().mean(0)), "exact:", f"{right.all(1).float().mean():.3f}")
    else:
        prompts, answers = task.batch(256, generator, **sizes)
        shown = answers.clone()
        shown[:, 1::2] = task.mask
        right = predict(prompts, shown) == answers
        print("value slots, keys shown:", row(right[:, 1::2].float().mean(0)))
