"""Tiny configurations of the real diffusers model classes, with example inputs.

One table row per class (`TINY_CONFIGS`) builds the real class (so hooks meet the real module tree and
forward code) at a size that runs in milliseconds on a CPU; `TINY_MODELS` adds a function that makes a
valid set of forward inputs for a given batch size. Used by the adapter tests (one model per supported
family) and, with overrides, by the tiny pipelines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TinyModel:
    """The forward-input factory of one tiny model (its constructor arguments are its `TINY_CONFIGS` row)."""

    class_name: str
    make_inputs: Callable[[int, torch.Generator], dict]
    timestep_scale: float = 1000.0  # flow-matching transformers (FLUX, Qwen-Image) take t in [0, 1]


# Constructor arguments of each tiny model: the real diffusers class at a size that runs in milliseconds on a CPU.
# The tiny pipelines build their denoisers from the same rows (`tiny_model(name, **overrides)`).
TINY_CONFIGS: dict[str, dict] = {
    "FluxTransformer2DModel": dict(
        patch_size=1,
        in_channels=8,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=(4, 4, 8),
    ),
    "SD3Transformer2DModel": dict(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        caption_projection_dim=16,
        pooled_projection_dim=16,
        out_channels=4,
        pos_embed_max_size=16,
    ),
    "PixArtTransformer2DModel": dict(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        cross_attention_dim=16,
        sample_size=8,
        patch_size=2,
        caption_channels=16,
    ),
    "DiTTransformer2DModel": dict(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        num_layers=2,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=10,
    ),
    "QwenImageTransformer2DModel": dict(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        axes_dims_rope=(4, 6, 6),
    ),
    "SanaTransformer2DModel": dict(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=16,
        sample_size=8,
        patch_size=1,
    ),
    "WanTransformer3DModel": dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=16,
        ffn_dim=32,
        num_layers=2,
        rope_max_seq_len=32,
    ),
    "HunyuanVideoTransformer3DModel": dict(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        num_single_layers=2,
        num_refiner_layers=1,
        patch_size=1,
        patch_size_t=1,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 2, 4),
    ),
    "CogVideoXTransformer3DModel": dict(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        time_embed_dim=8,
        text_embed_dim=16,
        num_layers=2,
        sample_width=8,
        sample_height=8,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=8,
    ),
    "LTXVideoTransformer3DModel": dict(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=2,
        caption_channels=16,
    ),
    "LatteTransformer3DModel": dict(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        sample_size=8,
        patch_size=2,
        caption_channels=16,
        cross_attention_dim=16,
        video_length=2,
    ),
    "UNet2DConditionModel": dict(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    ),
    "UNet2DModel": dict(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=4,
    ),
}


def tiny_model(class_name: str, **overrides) -> nn.Module:
    """The diffusers class `class_name` built from its `TINY_CONFIGS` row, with `overrides` replacing entries
    (randomly initialised from torch's global generator; `build_tiny` seeds it)."""
    import diffusers

    if class_name not in TINY_CONFIGS:
        raise ValueError(f"no tiny config for {class_name!r}; known: {sorted(TINY_CONFIGS)}")
    return getattr(diffusers, class_name)(**{**TINY_CONFIGS[class_name], **overrides})


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen)


def _flux_inputs(batch: int, gen: torch.Generator) -> dict:
    h = w = 4
    img_ids = torch.zeros(h, w, 3)
    img_ids[..., 1] = torch.arange(h)[:, None]
    img_ids[..., 2] = torch.arange(w)[None, :]
    img_ids = img_ids.reshape(-1, 3)
    return dict(
        hidden_states=_randn(gen, batch, h * w, 8),
        encoder_hidden_states=_randn(gen, batch, 6, 32),
        pooled_projections=_randn(gen, batch, 32),
        timestep=torch.full((batch,), 0.7),
        img_ids=img_ids,
        txt_ids=torch.zeros(6, 3),
        return_dict=False,
    )


def _sd3_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 4, 8, 8),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        pooled_projections=_randn(gen, batch, 16),
        timestep=torch.full((batch,), 500.0),
        return_dict=False,
    )


def _pixart_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 4, 8, 8),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        timestep=torch.full((batch,), 500.0),
        added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        return_dict=False,
    )


def _dit_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 4, 8, 8),
        timestep=torch.full((batch,), 500),
        class_labels=torch.arange(batch) % 10,
        return_dict=False,
    )


def _qwen_inputs(batch: int, gen: torch.Generator) -> dict:
    h = w = 4
    return dict(
        hidden_states=_randn(gen, batch, h * w, 16),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        encoder_hidden_states_mask=torch.ones(batch, 5, dtype=torch.long),
        timestep=torch.full((batch,), 0.5),
        img_shapes=[[(1, h, w)]] * batch,
        return_dict=False,
    )


def _sana_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 4, 8, 8),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        timestep=torch.full((batch,), 500.0),
        return_dict=False,
    )


def _wan_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 4, 2, 8, 8),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        timestep=torch.full((batch,), 500.0),
        return_dict=False,
    )


def _hunyuan_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 4, 2, 4, 4),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        pooled_projections=_randn(gen, batch, 8),
        timestep=torch.full((batch,), 500),
        encoder_attention_mask=torch.ones(batch, 5),
        guidance=torch.full((batch,), 3500.0),
        return_dict=False,
    )


def _cogvideox_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 3, 4, 8, 8),
        encoder_hidden_states=_randn(gen, batch, 8, 16),
        timestep=torch.full((batch,), 500),
        return_dict=False,
    )


def _ltx_inputs(batch: int, gen: torch.Generator) -> dict:
    frames, h, w = 2, 4, 4
    return dict(
        hidden_states=_randn(gen, batch, frames * h * w, 8),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        timestep=torch.full((batch,), 500),
        encoder_attention_mask=torch.ones(batch, 5),
        num_frames=frames,
        height=h,
        width=w,
        return_dict=False,
    )


def _latte_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 4, 2, 8, 8),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        timestep=torch.full((batch,), 500),
        enable_temporal_attentions=True,
        return_dict=False,
    )


def _unet2d_condition_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        sample=_randn(gen, batch, 4, 8, 8),
        timestep=torch.full((batch,), 500),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        return_dict=False,
    )


def _unet2d_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(sample=_randn(gen, batch, 3, 8, 8), timestep=torch.full((batch,), 500), return_dict=False)


TINY_MODELS: dict[str, TinyModel] = {
    tm.class_name: tm
    for tm in (
        TinyModel("FluxTransformer2DModel", _flux_inputs, 1.0),
        TinyModel("SD3Transformer2DModel", _sd3_inputs),
        TinyModel("PixArtTransformer2DModel", _pixart_inputs),
        TinyModel("DiTTransformer2DModel", _dit_inputs),
        TinyModel("QwenImageTransformer2DModel", _qwen_inputs, 1.0),
        TinyModel("SanaTransformer2DModel", _sana_inputs),
        TinyModel("WanTransformer3DModel", _wan_inputs),
        TinyModel("HunyuanVideoTransformer3DModel", _hunyuan_inputs),
        TinyModel("CogVideoXTransformer3DModel", _cogvideox_inputs),
        TinyModel("LTXVideoTransformer3DModel", _ltx_inputs),
        TinyModel("LatteTransformer3DModel", _latte_inputs),
        TinyModel("UNet2DConditionModel", _unet2d_condition_inputs),
        TinyModel("UNet2DModel", _unet2d_inputs),
    )
}


def build_tiny(class_name: str, seed: int = 0) -> nn.Module:
    """The tiny model of `class_name`, randomly initialised with `seed`, in eval mode."""
    torch.manual_seed(seed)
    return tiny_model(class_name).eval()


def tiny_inputs(class_name: str, batch: int = 1, seed: int = 0) -> dict:
    """A valid set of forward inputs for the tiny model of `class_name`."""
    return TINY_MODELS[class_name].make_inputs(batch, torch.Generator().manual_seed(seed))


def at_step(class_name: str, inputs: dict, step: int, num_steps: int) -> dict:
    """`inputs` with the timestep of denoising step `step` of `num_steps` (decreasing, as in a sampler)."""
    tiny = TINY_MODELS[class_name]
    value = tiny.timestep_scale * (1.0 - step / num_steps)
    t = inputs["timestep"]
    return {**inputs, "timestep": torch.full_like(t, value if t.is_floating_point() else round(value))}
