"""Does a one-lookup kv model look its query up, or pick the value whose key occurs twice? (ours)

With 2 records and 1 query, the queried key occurs twice in the sequence and the other key once, so "the
value whose key is repeated" answers every prompt without matching the query to a key. Three variants of
the same 2000 prompts (2 records over 32 key symbols), decoded with the answer's value slot masked:

* ``plain``: the task's prompt;
* ``control``: one more key symbol that is in neither record (a length/position control);
* ``distractor``: the other record's key instead, so that both keys occur twice.

A lookup of the query is unaffected by either; the repetition shortcut falls to chance (0.5) on
``distractor`` only. Layouts: the single answer slot right after its query (``<s> k1 v1 k2 v2 ? [y] q | _``,
the extra key ``y`` before ``q``), or ``--echo`` answers (``<s> k1 v1 k2 v2 ? y | q _``: the prompt's query
replaced by ``y``, the echoed ``q`` kept, so the value slot still follows its key).

    OMP_NUM_THREADS=1 python eval/kv_diag/repetition_probe.py /work/kv3-runs/H-ckpt-final
    OMP_NUM_THREADS=1 python eval/kv_diag/repetition_probe.py /work/kv3-runs/U-echo-g2/checkpoint --echo
"""

from __future__ import annotations

import argparse

import torch

from diffaccel.dllm.tasks.kv import KeyValueTask
from diffaccel.dllm.train_recall import init_weights
from diffaccel.dllm.training import tiny_llada


def other_key(generator: torch.Generator, k1: torch.Tensor, k2: torch.Tensor, n_keys: int) -> torch.Tensor:
    """A key symbol per row that is neither ``k1`` nor ``k2``."""
    x = torch.randint(0, n_keys, k1.shape, generator=generator)
    bad = (x == k1) | (x == k2)
    while bad.any():
        x[bad] = torch.randint(0, n_keys, (int(bad.sum()),), generator=generator)
        bad = (x == k1) | (x == k2)
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a train_recall checkpoint folder (state.safetensors)")
    parser.add_argument("--echo", action="store_true", help="the checkpoint was trained with --echo --gen-length 2")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--ff", type=int, default=256)
    a = parser.parse_args()
    # the runs' vocabulary (32 keys, 64 values, 32 filler symbols); the filler counts do not change token ids
    task = KeyValueTask(
        n_records=4, gen_length=2 if a.echo else 1, n_keys=32, n_values=64, n_filler=1, n_filler_symbols=32, echo=a.echo
    )
    model = tiny_llada(a, task.vocab_size, task.mask, task.eos, task.bos)
    init_weights(model, a.checkpoint)
    model.eval()
    g = torch.Generator().manual_seed(7)
    prompts, answers = task.batch(a.count, g, records=2, keys=32, fillers=0)
    k1, k2, q = prompts[:, 1], prompts[:, 3], prompts[:, -1]
    extra = {"plain": None, "control": other_key(g, k1, k2, task.n_keys), "distractor": k1 + k2 - q}
    truth = answers[:, -1]
    slot = torch.full_like(q, task.mask)[:, None]
    for name, y in extra.items():
        if a.echo:
            body = prompts if y is None else torch.cat([prompts[:, :-1], y[:, None]], 1)
            tokens = torch.cat([body, answers[:, :1], slot], 1)
        else:
            body = prompts if y is None else torch.cat([prompts[:, :-1], y[:, None], prompts[:, -1:]], 1)
            tokens = torch.cat([body, slot], 1)
        with torch.no_grad():
            predicted = model(tokens).logits[:, -1].argmax(-1)
        accuracy = (predicted == truth).float().mean().item()
        print(
            f"{name:10s} accuracy {accuracy:.3f} on {a.count} prompts, e.g. {task.render(tokens[0])} -> "
            f"{task.render(predicted[:1])} (truth {task.render(truth[:1])})"
        )


if __name__ == "__main__":
    main()
