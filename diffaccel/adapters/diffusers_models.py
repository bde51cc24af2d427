"""Built-in adapters for the diffusers model families diffaccel supports.

Cache units follow TaylorSeer's official granularity (Shenyi-Z/TaylorSeer): attention and
feed-forward outputs *before* adaLN gating (diffusers blocks apply gates and residual additions
outside these sub-modules, so a hook on the sub-module caches exactly the pre-gate output while
norms and gates still run every step); FLUX/HunyuanVideo single blocks cache `proj_out` with
`attn` and `proj_mlp` as feeders. UNets have no official TaylorSeer granularity: there, each
resnet block output and each transformer sub-module (or attention block) is a unit [ours].

Each transformer family also names its block stack (`StackSpec`) for the "stack" granularity [ours]: the
whole stack is one unit whose residual is forecast while the embedded input still flows through, so
a skipped step runs only the embeddings and the output layer. UNets (skip connections) and Latte
(reshapes between spatial and temporal blocks) have none.

TaylorSeer presets: FLUX 6/1/3, HunyuanVideo and Wan 5/1/1, DiT 4/4/2 are the official defaults
(the official scripts' defaults); every other family uses our default, marked below.
"""

from __future__ import annotations

from .registry import Adapter, StackSpec, UnitSpec, register_adapter

# (interval, order, warmup)
_OFFICIAL_FLUX = {"interval": 6, "order": 1, "warmup": 3}
_OFFICIAL_VIDEO = {"interval": 5, "order": 1, "warmup": 1}
_OFFICIAL_DIT = {"interval": 4, "order": 4, "warmup": 2}
_OURS_DIT = {"interval": 5, "order": 1, "warmup": 3}  # [ours] no official preset for this family
_OURS_UNET = {"interval": 3, "order": 1, "warmup": 2}  # [ours] UNets are not in the TaylorSeer paper


def _units(prefix: str, *names_and_kinds: tuple[str, str]) -> tuple[UnitSpec, ...]:
    return tuple(UnitSpec(rf"{prefix}\.\d+\.{name}", kind) for name, kind in names_and_kinds)


_IMAGE_STREAM = ("hidden_states",)
_TEXT_THEN_IMAGE = ("encoder_hidden_states", "hidden_states")
_IMAGE_THEN_TEXT = ("hidden_states", "encoder_hidden_states")
_SINGLE_STREAM = UnitSpec(r"single_transformer_blocks\.\d+\.proj_out", "single", feeders=("attn", "proj_mlp"))

BUILTIN_ADAPTERS = (
    Adapter(
        "flux",
        ("FluxTransformer2DModel",),
        _units("transformer_blocks", ("attn", "joint_attn"), ("ff", "mlp"), ("ff_context", "mlp_context"))
        + (_SINGLE_STREAM,),
        presets={"taylorseer": _OFFICIAL_FLUX},
        model_channel_dim=-1,
        stack=StackSpec(("transformer_blocks", "single_transformer_blocks"), _TEXT_THEN_IMAGE),
    ),
    Adapter(
        "sd3",
        ("SD3Transformer2DModel",),
        _units(
            "transformer_blocks",
            ("attn", "joint_attn"),
            ("attn2", "attn"),
            ("ff", "mlp"),
            ("ff_context", "mlp_context"),
        ),
        presets={"taylorseer": _OURS_DIT},
        stack=StackSpec(("transformer_blocks",), _TEXT_THEN_IMAGE),
    ),
    Adapter(
        "pixart",
        ("PixArtTransformer2DModel",),
        _units("transformer_blocks", ("attn1", "attn"), ("attn2", "cross_attn"), ("ff", "mlp")),
        presets={"taylorseer": _OURS_DIT},
        stack=StackSpec(("transformer_blocks",), _IMAGE_STREAM),
    ),
    Adapter(
        "dit",
        ("DiTTransformer2DModel",),
        _units("transformer_blocks", ("attn1", "attn"), ("ff", "mlp")),
        presets={"taylorseer": _OFFICIAL_DIT},
        stack=StackSpec(("transformer_blocks",), _IMAGE_STREAM),
    ),
    Adapter(
        "qwen-image",
        ("QwenImageTransformer2DModel",),
        _units("transformer_blocks", ("attn", "joint_attn"), ("img_mlp", "mlp"), ("txt_mlp", "mlp_context")),
        presets={"taylorseer": _OURS_DIT},
        model_channel_dim=-1,
        stack=StackSpec(("transformer_blocks",), _TEXT_THEN_IMAGE),
    ),
    Adapter(
        "sana",
        ("SanaTransformer2DModel",),
        _units("transformer_blocks", ("attn1", "attn"), ("attn2", "cross_attn"), ("ff", "mlp")),
        presets={"taylorseer": _OURS_DIT},
        stack=StackSpec(("transformer_blocks",), _IMAGE_STREAM),
    ),
    Adapter(
        "wan",
        ("WanTransformer3DModel",),
        _units("blocks", ("attn1", "attn"), ("attn2", "cross_attn"), ("ffn", "mlp")),
        presets={"taylorseer": _OFFICIAL_VIDEO},
        stack=StackSpec(("blocks",), _IMAGE_STREAM),
    ),
    Adapter(
        "hunyuan-video",
        ("HunyuanVideoTransformer3DModel",),
        _units("transformer_blocks", ("attn", "joint_attn"), ("ff", "mlp"), ("ff_context", "mlp_context"))
        + (_SINGLE_STREAM,),
        presets={"taylorseer": _OFFICIAL_VIDEO},
        stack=StackSpec(("transformer_blocks", "single_transformer_blocks"), _IMAGE_THEN_TEXT),
    ),
    Adapter(
        "cogvideox",
        ("CogVideoXTransformer3DModel",),
        _units("transformer_blocks", ("attn1", "joint_attn"), ("ff", "mlp")),
        presets={"taylorseer": _OURS_DIT},
        stack=StackSpec(("transformer_blocks",), _IMAGE_THEN_TEXT),
    ),
    Adapter(
        "ltx-video",
        ("LTXVideoTransformer3DModel",),
        _units("transformer_blocks", ("attn1", "attn"), ("attn2", "cross_attn"), ("ff", "mlp")),
        presets={"taylorseer": _OURS_DIT},
        model_channel_dim=-1,
        stack=StackSpec(("transformer_blocks",), _IMAGE_STREAM),
    ),
    Adapter(
        "latte",
        ("LatteTransformer3DModel",),
        _units("transformer_blocks", ("attn1", "attn"), ("attn2", "cross_attn"), ("ff", "mlp"))
        + _units("temporal_transformer_blocks", ("attn1", "temporal_attn"), ("ff", "temporal_mlp")),
        presets={"taylorseer": _OURS_DIT},
    ),
    Adapter(
        "unet2d-condition",
        ("UNet2DConditionModel",),
        (
            UnitSpec(r".*\.resnets\.\d+", "resnet", channel_dim=1),
            UnitSpec(r".*\.transformer_blocks\.\d+\.attn1", "attn"),
            UnitSpec(r".*\.transformer_blocks\.\d+\.attn2", "cross_attn"),
            UnitSpec(r".*\.transformer_blocks\.\d+\.ff", "mlp"),
        ),
        presets={"taylorseer": _OURS_UNET},
    ),
    Adapter(
        "unet2d",
        ("UNet2DModel",),
        (
            UnitSpec(r".*\.resnets\.\d+", "resnet", channel_dim=1),
            UnitSpec(r".*\.attentions\.\d+", "attn", channel_dim=1),
        ),
        presets={"taylorseer": _OURS_UNET},
    ),
)

for _adapter in BUILTIN_ADAPTERS:
    register_adapter(_adapter)
