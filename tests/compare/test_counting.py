"""Work counting for peers, against hand-computed multiply-accumulates."""

from __future__ import annotations

import torch
from torch import nn

from diffaccel.compare.counting import CallCounts, WorkCounter, calls_per_step, compare_counts


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.up = nn.Linear(dim, 3 * dim)
        self.down = nn.Linear(3 * dim, dim)

    def forward(self, x):
        return x + self.down(torch.relu(self.up(x)))


class Toy(nn.Module):
    """Embedding (not counted: outside the block list), two blocks, a conv in the block list, a head."""

    def __init__(self, dim=4, skip_second=False):
        super().__init__()
        self.embed = nn.Linear(2, dim)
        self.transformer_blocks = nn.ModuleList([Block(dim), Block(dim)])
        self.head = nn.Linear(dim, 2)
        self.skip_second = skip_second

    def forward(self, hidden_states):
        x = self.embed(hidden_states)
        for i, block in enumerate(self.transformer_blocks):
            if i == 1 and self.skip_second:
                continue
            x = block(x)
        return self.head(x)


def test_linear_macs_per_call_match_hand_count():
    model = Toy()
    x = torch.randn(3, 5, 2)  # batch 3, 5 tokens: 15 rows
    with WorkCounter({"transformer": model}) as counter:
        model(hidden_states=x)
        model(hidden_states=x[:1])
    # one block: up 4->12 and down 12->4, i.e. rows * (4*12 + 12*4) = rows * 96; two blocks: rows * 192
    assert counter.counts.calls["transformer"] == [15 * 192, 5 * 192]
    assert counter.counts.first_batch == {"transformer": 3}
    # hooks are removed on exit: nothing more is counted
    model(hidden_states=x)
    assert counter.counts.calls["transformer"] == [15 * 192, 5 * 192]


def test_conv_macs():
    class ConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.down_blocks = nn.ModuleList([nn.Conv2d(2, 6, kernel_size=3, padding=1, groups=2)])

        def forward(self, sample):
            return self.down_blocks[0](sample)

    net = ConvNet()
    with WorkCounter({"unet": net}) as counter:
        net(torch.randn(1, 2, 5, 5))
    # output elements 6*5*5, each needs (in/groups = 1) * 3*3 MACs
    assert counter.counts.calls["unet"] == [6 * 25 * 1 * 9]


def test_skipped_blocks_show_in_fraction_and_full_steps():
    full, skipping = Toy(), Toy(skip_second=True)
    skipping.load_state_dict(full.state_dict())
    x = torch.randn(1, 4, 2)
    steps = 3
    with WorkCounter({"transformer": full}) as base:
        for _ in range(steps):
            full(hidden_states=x)
    with WorkCounter({"transformer": skipping}) as run:
        skipping.skip_second = False
        skipping(hidden_states=x)  # step 0 computes everything
        skipping.skip_second = True
        for _ in range(steps - 1):
            skipping(hidden_states=x)
    stats = compare_counts(run.counts, base.counts, steps)
    # steps 1 and 2 compute one of two equal blocks: (1 + 0.5 + 0.5) / 3
    assert stats.computed_fraction == 2 / 3
    assert stats.full_steps == 1 and stats.calls_per_step == 1


def test_two_calls_per_step_are_grouped():
    base = CallCounts({"transformer": [10, 10, 10, 10]})
    run = CallCounts({"transformer": [10, 10, 10, 4]})  # step 1's second (uncond) call skipped work
    stats = compare_counts(run, base, steps=2)
    assert calls_per_step(base, 2) == 2
    assert stats.full_steps == 1 and stats.computed_fraction == 34 / 40


def test_mismatched_call_counts_give_no_full_steps():
    stats = compare_counts(CallCounts({"t": [5, 5]}), CallCounts({"t": [5, 5, 5]}), steps=3)
    assert stats.full_steps is None and "calls" in stats.note
    assert stats.computed_fraction == 10 / 15
