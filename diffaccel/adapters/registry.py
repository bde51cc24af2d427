"""The adapter registry: model class → cache units, timestep argument and strategy presets.

An adapter is data. A new model family is one `register_adapter(Adapter(...))` call naming its
class, the regular expressions (matched in full against `named_modules()` names) of its cache
units, and the sibling "feeder" modules that only exist to produce a unit's input and may be
skipped whenever that unit is forecast (FLUX single blocks: `attn` and `proj_mlp` feed `proj_out`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..core.errors import UnsupportedModelError


@dataclass(frozen=True)
class UnitSpec:
    """A family of cache units.

    Attributes:
        pattern: regular expression matched in full against qualified module names.
        kind: a short label for statistics ("attn", "cross_attn", "mlp", "single", "resnet", ...).
        feeders: names of sibling modules (children of the unit's parent) that are skipped whenever
            the unit is forecast; on those steps they return empty placeholders shaped like their
            last output with a last dimension of 0, so the parent's concatenations still run.
        level: "blocks" for sub-module units, "stack" for the whole block stack, "model" for the
            whole denoiser output.
        channel_dim: the feature-channel axis of the unit's outputs (per-channel strategies such as
            HyCa cluster along it): -1 for token-major transformer features, 1 for [B, C, H, W].
        carries: for a "stack" unit, the first block's argument names whose values, at each call,
            are subtracted from the unit's output leaves (in order) before a strategy sees them and
            added back to its forecasts: the strategy then forecasts the stack's residual while the
            fresh input still flows through. Feeders of a stack unit are named from the model root.
    """

    pattern: str
    kind: str
    feeders: tuple[str, ...] = ()
    level: str = "blocks"
    channel_dim: int = -1
    carries: tuple[str, ...] = ()


@dataclass(frozen=True)
class StackSpec:
    """The residual stack of a transformer: the `nn.ModuleList`s of blocks a forward runs one after the
    other, with nothing between them but the hidden states they pass on.

    Attributes:
        lists: attribute names of the block lists, in call order.
        carries: argument names of the first block that the last block returns updated, in the order
            of the last block's output (FLUX blocks take `hidden_states, encoder_hidden_states` and
            return `(encoder_hidden_states, hidden_states)`).
    """

    lists: tuple[str, ...]
    carries: tuple[str, ...]


@dataclass(frozen=True)
class Adapter:
    """How diffaccel attaches to one model family."""

    family: str
    class_names: tuple[str, ...]
    units: tuple[UnitSpec, ...]
    timestep_arg: str | None = "timestep"
    model_channel_dim: int = 1  # channel axis of the denoiser's own output ([B, C, ...] latents)
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    notes: str = ""
    #: the block stack, for strategies at "stack" granularity [ours]; None where blocks do not simply pass
    #: hidden states on (UNets' skip connections, Latte's reshapes between spatial and temporal blocks)
    stack: StackSpec | None = None
    #: structural match for modules of classes no adapter names: a regular expression matched in full
    #: against the class names of the module's sub-modules; the module's forward must also take
    #: `timestep_arg`. Lets policies from other code bases attach without importing them.
    detect: str | None = None

    def matches_structure(self, module: nn.Module) -> bool:
        if self.detect is None or not _forward_takes(module, self.timestep_arg):
            return False
        pattern = re.compile(self.detect)
        return any(pattern.fullmatch(type(m).__name__) for m in module.modules() if m is not module)

    def resolve_units(self, model: nn.Module, level: str) -> list[tuple[str, nn.Module, UnitSpec]]:
        """Every (qualified name, module, spec) of this level in `model`, in module order."""
        if level == "model":
            return [("", model, UnitSpec("", "model", level="model", channel_dim=self.model_channel_dim))]
        if level == "stack":
            return [self._resolve_stack(model)]
        compiled = [(re.compile(spec.pattern), spec) for spec in self.units if spec.level == level]
        found = []
        for name, module in model.named_modules():
            for regex, spec in compiled:
                if regex.fullmatch(name):
                    found.append((name, module, spec))
                    break
        if not found:
            raise UnsupportedModelError(
                f"The {self.family} adapter matched no cache units in {type(model).__name__}; "
                f"patterns: {[s.pattern for s in self.units]}."
            )
        return found

    def _resolve_stack(self, model: nn.Module) -> tuple[str, nn.Module, UnitSpec]:
        """The last block is the unit; every other block is a feeder, skipped whenever it is forecast."""
        if self.stack is None:
            raise UnsupportedModelError(
                f"The {self.family} adapter has no block stack (granularity='stack'): its blocks do more than "
                "pass hidden states on. Use the default granularity."
            )
        names = [
            f"{list_name}.{i}"
            for list_name in self.stack.lists
            for i in range(len(getattr(model, list_name, None) or ()))
        ]
        if not names:
            raise UnsupportedModelError(f"{type(model).__name__} has no blocks in {list(self.stack.lists)}")
        last = names[-1]
        spec = UnitSpec(
            last.replace(".", r"\."), "stack", feeders=tuple(names[:-1]), level="stack", carries=self.stack.carries
        )
        return last, model.get_submodule(last), spec

    def preset(self, strategy_name: str, tuned: str | None = None) -> dict[str, Any]:
        """Options this family sets for a strategy. HyCa shares TaylorSeer's interval schedule, so
        without a preset of its own it takes TaylorSeer's interval and warm-up. `tuned` names a tuned
        preset (`diffaccel.schedules.presets`), whose options for this family go on top."""
        if strategy_name == "hyca" and "hyca" not in self.presets and "taylorseer" in self.presets:
            ts = self.presets["taylorseer"]
            found = {k: ts[k] for k in ("interval", "warmup") if k in ts}
        else:
            found = dict(self.presets.get(strategy_name, {}))
        if tuned is not None:
            from ..schedules.presets import tuned_preset

            found.update(tuned_preset(strategy_name, tuned, self.family, self.stack is not None), preset=tuned)
        return found


_ADAPTERS: dict[str, Adapter] = {}
_STRUCTURAL: list[Adapter] = []  # adapters with `detect`, tried in registration order


def _forward_takes(module: nn.Module, name: str | None) -> bool:
    import inspect

    try:
        return name is not None and name in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


#: pipeline components that are denoisers: what `wrap` attaches to (with an adapter, or for whole-model
#: strategies without one), what `compare` and the generation scripts treat as the model. `model` is the single
#: model of a diffusion-LM pipeline.
DENOISER_COMPONENTS = ("transformer", "transformer_2", "unet", "prior", "model")


def register_adapter(adapter: Adapter, *, replace: bool = False) -> Adapter:
    """Describe a model family to diffaccel. Returns the adapter.

    Example for a custom DiT whose blocks live in `model.layers` with `attn` and `mlp` children::

        diffaccel.register_adapter(diffaccel.Adapter(
            family="my-dit", class_names=("MyDiT",),
            units=(diffaccel.UnitSpec(r"layers\\.\\d+\\.attn", "attn"),
                   diffaccel.UnitSpec(r"layers\\.\\d+\\.mlp", "mlp")),
            presets={"taylorseer": {"interval": 5, "order": 1, "warmup": 3}}))
    """
    for name in adapter.class_names:
        if name in _ADAPTERS and not replace and _ADAPTERS[name] != adapter:
            raise ValueError(f"an adapter for {name} is already registered; pass replace=True to override it")
    for name in adapter.class_names:
        _ADAPTERS[name] = adapter
    if adapter.detect is not None and adapter not in _STRUCTURAL:
        _STRUCTURAL.append(adapter)
    return adapter


def find_adapter(module: nn.Module) -> Adapter | None:
    """The adapter registered for `module`'s class (or a base class), or None."""
    for cls in type(module).__mro__:
        if cls.__name__ in _ADAPTERS:
            return _ADAPTERS[cls.__name__]
    for adapter in _STRUCTURAL:
        if adapter.matches_structure(module):
            return adapter
    return None


def get_adapter(module: nn.Module) -> Adapter:
    adapter = find_adapter(module)
    if adapter is None:
        raise UnsupportedModelError(
            f"diffaccel has no adapter for {type(module).__name__}. Supported classes: "
            f"{', '.join(supported_classes())}. Describe a new family with diffaccel.register_adapter("
            "diffaccel.Adapter(family=..., class_names=(...), units=(diffaccel.UnitSpec(pattern, kind), ...)))."
        )
    return adapter


def generic_adapter(module: nn.Module) -> Adapter:
    """For whole-model strategies on a model no adapter describes: no block units; the timestep is
    read from a `timestep` argument when the forward has one."""
    import inspect

    try:
        has_timestep = "timestep" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        has_timestep = False
    return Adapter(f"generic:{type(module).__name__}", (), (), timestep_arg="timestep" if has_timestep else None)


def supported_classes() -> list[str]:
    return sorted(_ADAPTERS)
