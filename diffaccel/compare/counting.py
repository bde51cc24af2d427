"""Counting the work a denoiser really did, for peers that report no statistics of their own.

diffaccel's strategies report `computed_fraction` themselves (`diffaccel.summary`). Peers (diffusers'
hooks, cache-dit) do not, and their mechanisms differ: FBC and MagCache still *call* every block but skip
the block bodies, PAB and TaylorSeer replace attention modules' forwards, FasterCache halves the batch of
some calls, cache-dit swaps the block list for its own module. Counting block calls would therefore be
wrong; what all of them share is that a skipped computation never reaches the layers that do the
arithmetic. So we count multiply-accumulates (MACs) of every `nn.Linear` and `nn.Conv*` inside the
denoiser's block lists (forward hooks on those leaf layers, which no peer replaces), per denoiser call:

    MACs(Linear) = output elements × in_features
    MACs(Conv)   = output elements × in_channels / groups × kernel elements

`computed_fraction` of a peer run = its block MACs / the block MACs of the full-step baseline run of the
same seed and conditioning. A step is a full step when every denoiser call in it did all the MACs the
baseline did at that call. Attention's score/value products (no weights) are not counted; for the
step-level decisions peers make this changes nothing, and the scope is stated in the table notes.

The counting is done in a separate, untimed pass (the hooks would slow the timed call down); the harness
checks that this pass reproduced the timed output bit for bit, and reports null otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .models import BLOCK_LIST_NAMES

COUNTED_SCOPE = "Linear/Conv MACs inside the denoiser's block lists, vs the baseline run (counted)"


def block_modules(denoiser: nn.Module) -> list[nn.Module]:
    """The block lists (and a UNet's `mid_block`) whose layers are counted; the whole model if it has none."""
    found: list[nn.Module] = []
    for name, child in denoiser.named_children():
        if (name in BLOCK_LIST_NAMES and isinstance(child, nn.ModuleList)) or name == "mid_block":
            found.append(child)
    return found or [denoiser]


def _macs(module: nn.Module, output) -> int:
    if not isinstance(output, torch.Tensor):
        return 0
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    if isinstance(module, nn.modules.conv._ConvNd):
        kernel = 1
        for size in module.kernel_size:
            kernel *= size
        return output.numel() * (module.in_channels // module.groups) * kernel
    return 0


@dataclass
class CallCounts:
    """MACs per denoiser call, in call order, for every counted denoiser (component name → list)."""

    calls: dict[str, list[int]] = field(default_factory=dict)
    #: batch size of the first denoiser call (to tell a doubled guidance batch from one sample per image)
    first_batch: dict[str, int] = field(default_factory=dict)

    def total(self) -> int:
        return sum(sum(v) for v in self.calls.values())

    def as_dict(self) -> dict:
        return {"calls": {k: list(v) for k, v in self.calls.items()}, "first_batch": dict(self.first_batch)}

    @classmethod
    def from_dict(cls, data: dict) -> CallCounts:
        return cls(
            {k: [int(x) for x in v] for k, v in data["calls"].items()},
            {k: int(v) for k, v in data.get("first_batch", {}).items()},
        )


class WorkCounter:
    """Context manager: while active, count block MACs per call of each denoiser.

    with WorkCounter({"transformer": pipe.transformer}) as counter:
        pipe(...)
    counter.counts.calls["transformer"]  # [MACs of call 0, call 1, ...]
    """

    def __init__(self, denoisers: dict[str, nn.Module]):
        self.denoisers = denoisers
        self.counts = CallCounts({name: [] for name in denoisers})
        self._handles: list = []

    def __enter__(self) -> WorkCounter:
        for name, denoiser in self.denoisers.items():
            self._handles.append(denoiser.register_forward_pre_hook(self._start_call(name), with_kwargs=True))
            for scope in block_modules(denoiser):
                for module in scope.modules():
                    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
                        self._handles.append(module.register_forward_hook(self._count(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _start_call(self, name: str):
        def hook(module, args, kwargs):
            self.counts.calls[name].append(0)
            if name not in self.counts.first_batch:
                first = kwargs.get("hidden_states", kwargs.get("sample", args[0] if args else None))
                if isinstance(first, torch.Tensor) and first.ndim:
                    self.counts.first_batch[name] = int(first.shape[0])

        return hook

    def _count(self, name: str):
        def hook(module, args, output):
            calls = self.counts.calls[name]
            if calls:  # a layer run outside a denoiser call (never in a pipeline) is not attributed
                calls[-1] += _macs(module, output)

        return hook


@dataclass
class CountedStats:
    """What a counting pass says about one run, relative to the baseline run of the same inputs."""

    computed_fraction: float | None
    full_steps: int | None
    steps: int
    calls_per_step: int | None
    note: str = ""


def compare_counts(run: CallCounts, baseline: CallCounts, steps: int) -> CountedStats:
    """`computed_fraction` and `full_steps` of `run` against `baseline` (see the module docstring)."""
    total_base = baseline.total()
    if total_base == 0:
        return CountedStats(None, None, steps, None, "the baseline did no counted work")
    fraction = run.total() / total_base
    full_steps = 0
    calls_per_step = None
    for name, base_calls in baseline.calls.items():
        run_calls = run.calls.get(name, [])
        if len(run_calls) != len(base_calls) or len(base_calls) % steps:
            return CountedStats(
                fraction,
                None,
                steps,
                None,
                f"{name}: {len(run_calls)} calls vs {len(base_calls)} in the baseline; full steps not derived",
            )
        calls_per_step = len(base_calls) // steps
    for step in range(steps):
        full = True
        for name, base_calls in baseline.calls.items():
            run_calls = run.calls[name]
            per = len(base_calls) // steps
            window = range(step * per, (step + 1) * per)
            full = full and all(run_calls[i] >= base_calls[i] for i in window)
        full_steps += int(full)
    return CountedStats(fraction, full_steps, steps, calls_per_step)


def calls_per_step(baseline: CallCounts, steps: int) -> int | None:
    """Denoiser calls per step of the baseline (2 for two-call guidance, 1 for a doubled batch)."""
    lengths = [len(v) for v in baseline.calls.values() if v]
    if not lengths or steps <= 0 or lengths[0] % steps:
        return None
    return lengths[0] // steps
