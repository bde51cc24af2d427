"""Adapters for diffusion policies, matched by structure rather than by class name, so that policies
from other code bases attach without diffaccel depending on their packages:

* transformer noise predictors with `nn.TransformerDecoderLayer` blocks under a `decoder` — Diffusion
  Policy's `TransformerForDiffusion` (real-stanford/diffusion_policy), the target of BAC, and
  diffaccel's own `diffaccel.policy.TransformerDenoiser`. Units are each layer's self-attention,
  cross-attention and feed-forward branches, the three "blocks" BAC caches (its official code hooks
  `dropout1/2/3`; in eval mode those equal the outputs of `self_attn`, `multihead_attn` and
  `linear2`, and hooking the computing modules lets a reused branch skip its work; `linear1` feeds
  `linear2`);
* conditional 1-D UNets — Diffusion Policy's `ConditionalUnet1D` and LeRobot's
  `DiffusionConditionalUnet1d`: each conditional residual block is a unit [ours: neither BAC nor
  TaylorSeer define 1-D UNet units], as the resnet blocks of the 2-D UNet adapters are.

Detection (`Adapter.detect`): the module's forward takes a `timestep` argument and one of its
sub-modules has a class name matching the pattern. A policy wrapper (an `nn.Module` with
`predict_action`) has no such forward, so `wrap(policy, ...)` finds the noise predictor inside it.
"""

from __future__ import annotations

from .registry import Adapter, UnitSpec, register_adapter

_DECODER = r"(?:.*\.)?decoder\.layers\.\d+"

POLICY_ADAPTERS = (
    Adapter(
        "transformer-decoder-policy",
        (),
        (
            UnitSpec(rf"{_DECODER}\.self_attn", "attn"),
            UnitSpec(rf"{_DECODER}\.multihead_attn", "cross_attn"),
            UnitSpec(rf"{_DECODER}\.linear2", "mlp", feeders=("linear1",)),
        ),
        presets={"taylorseer": {"interval": 5, "order": 1, "warmup": 1}},  # [ours] no official preset
        detect=r"TransformerDecoderLayer",
        notes="Diffusion Policy TransformerForDiffusion layout (DP-T), BAC's target",
    ),
    Adapter(
        "conditional-unet1d",
        (),
        (
            UnitSpec(r"(?:.*\.)?(?:down_modules|up_modules)\.\d+\.[01]", "resnet", channel_dim=1),
            UnitSpec(r"(?:.*\.)?mid_modules\.\d+", "resnet", channel_dim=1),
        ),
        presets={"taylorseer": {"interval": 3, "order": 1, "warmup": 2}},  # [ours] as the 2-D UNets
        detect=r"(?:Diffusion)?ConditionalResidualBlock1[dD]",
        notes="Diffusion Policy ConditionalUnet1D / LeRobot DiffusionConditionalUnet1d",
    ),
)

for _adapter in POLICY_ADAPTERS:
    register_adapter(_adapter)
