"""Differential diagnosis of the two-lookup wall in the key-value task (ours).

Same batches (``KeyValueTask.batch``), same loss (``sft_loss``, LLaDA's SFT loss with every answer token
masked in every row), two models: ``tiny_llada`` (RoPE, RMSNorm, SwiGLU) and a plain
``torch.nn.TransformerEncoder`` with learned absolute position embeddings (bidirectional, pre-norm).
Prints the mean masked-answer accuracy per window of steps.

    OMP_NUM_THREADS=1 python eval/kv_diag/differential.py --model plain --gen-length 2 --steps 2000
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch
from torch import nn

from diffaccel.dllm.outputs import DiffusionLMOutput
from diffaccel.dllm.tasks.kv import KeyValueTask
from diffaccel.dllm.training import adamw, add_position_arguments, lr_factor, sft_loss, tiny_llada


class PlainEncoder(nn.Module):
    """Token + learned absolute position embeddings, ``nn.TransformerEncoder`` (pre-norm), a linear head."""

    def __init__(self, vocab: int, d: int, heads: int, layers: int, ff: int, max_len: int = 64) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> DiffusionLMOutput:
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))[None]
        return DiffusionLMOutput(logits=self.head(self.norm(self.encoder(x))))


def with_distractor(
    prompts: torch.Tensor, task: KeyValueTask, records: int, generator: torch.Generator
) -> torch.Tensor:
    """``<s> k1 v1 ... kn vn ? q`` -> ``<s> k1 v1 ... kn vn ? o_1 ... o_{n-1} q`` (the keys not queried, in random
    order): every key then occurs twice, so 'the value whose key is repeated' no longer names the answer; only
    matching ``q`` to its record does."""
    if task.gen_length != 1 or task.echo:
        raise ValueError("--distractor is for 1 query (gen_length 1, no echo)")
    keys = prompts[:, 1 : 1 + 2 * records : 2]
    query = prompts[:, -1:]
    order = torch.rand(keys.shape, generator=generator).argsort(dim=1)
    others = keys.gather(1, order)
    others = others[others != query.expand_as(others)].view(len(prompts), records - 1)
    return torch.cat([prompts[:, :-1], others, query], dim=1)


def add_learned_positions(model: nn.Module, d: int, max_len: int = 64) -> None:
    """Add a learned absolute position embedding to the token embedding of a ``tiny_llada`` (RoPE stays)."""
    model.pos = nn.Embedding(max_len, d)
    wte = model.model.transformer["wte"]
    wte.register_forward_hook(lambda _m, _i, out: out + model.pos(torch.arange(out.shape[1]))[None])


def add_shared_embedding_direction(model: nn.Module, scale: float, seed: int = 1234) -> None:
    """Add ``scale`` times one N(0, 1) vector to every row of a ``tiny_llada``'s token embedding (at init)."""
    wte = model.model.transformer["wte"].weight
    shared = torch.randn(wte.shape[1], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        wte.add_(scale * shared)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=("plain", "llada"), default="plain")
    p.add_argument("--gen-length", type=int, default=2)
    p.add_argument("--records", type=int, default=2, help="records per prompt (the most, with --min-records)")
    p.add_argument("--min-records", type=int, default=None, help="draw each batch's records from [min, records]")
    p.add_argument("--abs-pos", action="store_true", help="llada: add learned absolute position embeddings")
    add_position_arguments(p, max_positions=256)  # --model llada
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--keys", type=int, default=8)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--window", type=int, default=100)
    p.add_argument(
        "--distractor",
        action="store_true",
        help="2 records, 1 query: write the other record's key before the query (`? o q`), so both keys occur twice",
    )
    p.add_argument(
        "--gap",
        type=int,
        default=0,
        help="MASK tokens between the prompt and the answer (in the prompt: never in the loss, never revealed)",
    )
    p.add_argument(
        "--slot",
        type=int,
        default=None,
        help="train on this answer slot only (-1: one random slot per row) (all slots masked; equals sft_loss restricted to it: its mean CE)",
    )
    p.add_argument("--slot-steps", type=int, default=10**9, help="--slot for this many steps, then every slot")
    p.add_argument(
        "--embedding-offset",
        type=float,
        default=0.0,
        help="llada: add this multiple of one shared random vector to every token embedding at init (a direction "
        "common to all tokens, from which RoPE heads could attend by offset whatever the token)",
    )
    a = p.parse_args()
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    task = KeyValueTask(n_records=a.records, gen_length=a.gen_length, n_keys=a.keys, n_values=64)
    if a.model == "plain":
        model = PlainEncoder(task.vocab_size, a.d_model, a.heads, a.layers, 2 * a.d_model)
    else:
        model = tiny_llada(
            SimpleNamespace(
                d_model=a.d_model,
                n_heads=a.heads,
                n_layers=a.layers,
                ff=2 * a.d_model,
                positions=a.positions,
                max_positions=a.max_positions,
                rope_theta=a.rope_theta,
            ),
            task.vocab_size,
            task.mask,
            task.eos,
            task.bos,
        )
        if a.abs_pos:
            add_learned_positions(model, a.d_model)
        if a.embedding_offset:
            add_shared_embedding_direction(model, a.embedding_offset)
    opt = adamw(model, a.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, 50, a.steps))
    accs, slot_accs, t0 = [], [], time.time()
    for step in range(a.steps):
        records = (
            a.records if a.min_records is None else int(torch.randint(a.min_records, a.records + 1, (1,), generator=g))
        )
        prompts, answers = task.batch(a.batch, g, records=records)
        if a.distractor:
            prompts = with_distractor(prompts, task, records, g)
        if a.gap:
            prompts = torch.cat([prompts, torch.full((len(prompts), a.gap), task.mask)], dim=1)
        if a.slot is None or step >= a.slot_steps:
            loss, pred, masked = sft_loss(
                model, prompts, answers, g, task.mask, return_predictions=True, full_mask_rows=1.0
            )
        else:  # every slot masked, as sft_loss's full-mask rows; the cross-entropy of one slot only
            logits = model(torch.cat([prompts, torch.full_like(answers, task.mask)], 1)).logits[:, prompts.shape[1] :]
            slot = torch.full((len(answers),), a.slot)
            if a.slot < 0:  # one random slot per row
                slot = torch.randint(0, task.gen_length, (len(answers),), generator=g)
            rows = torch.arange(len(answers))
            loss = torch.nn.functional.cross_entropy(logits[rows, slot], answers[rows, slot])
            pred, masked = logits.detach().argmax(-1), torch.zeros_like(answers, dtype=torch.bool)
            masked[:, :] = True  # measured on every slot
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        accs.append(((pred == answers) & masked).sum().item() / masked.sum().item())
        slot_accs.append((pred == answers).float().mean(0))
        if (step + 1) % a.window == 0:
            print(
                f"step {step + 1} loss {loss.item():.3f} acc {sum(accs[-a.window :]) / a.window:.3f} "
                f"per slot {[round(x, 3) for x in torch.stack(slot_accs[-a.window :]).mean(0).tolist()]} "
                f"{time.time() - t0:.0f}s",
                flush=True,
            )


if __name__ == "__main__":
    main()
