"""Tiny configurations of the real diffusers model classes, with example inputs.

Each entry builds the real class (so hooks meet the real module tree and forward code) at a size
that runs in milliseconds on a CPU, plus a function that makes a valid set of forward inputs for a
given batch size. Used by the adapter tests: one model per supported family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TinyModel:
    """A tiny model factory and matching forward-input factory for one diffusers class."""

    class_name: str
    build: Callable[[], nn.Module]
    make_inputs: Callable[[int, torch.Generator], dict]
    timestep_scale: float = 1000.0  # flow-matching transformers (FLUX, Qwen-Image) take t in [0, 1]


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen)


def _flux() -> nn.Module:
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=8,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=(4, 4, 8),
    )


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


def _sd3() -> nn.Module:
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(
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
    )


def _sd3_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 4, 8, 8),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        pooled_projections=_randn(gen, batch, 16),
        timestep=torch.full((batch,), 500.0),
        return_dict=False,
    )


def _pixart() -> nn.Module:
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        cross_attention_dim=16,
        sample_size=8,
        patch_size=2,
        caption_channels=16,
    )


def _pixart_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 4, 8, 8),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        timestep=torch.full((batch,), 500.0),
        added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        return_dict=False,
    )


def _dit() -> nn.Module:
    from diffusers import DiTTransformer2DModel

    return DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        num_layers=2,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=10,
    )


def _dit_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 4, 8, 8),
        timestep=torch.full((batch,), 500),
        class_labels=torch.arange(batch) % 10,
        return_dict=False,
    )


def _qwen() -> nn.Module:
    from diffusers import QwenImageTransformer2DModel

    return QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        axes_dims_rope=(4, 6, 6),
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


def _sana() -> nn.Module:
    from diffusers import SanaTransformer2DModel

    return SanaTransformer2DModel(
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
    )


def _sana_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 4, 8, 8),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        timestep=torch.full((batch,), 500.0),
        return_dict=False,
    )


def _wan() -> nn.Module:
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
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
    )


def _wan_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 4, 2, 8, 8),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        timestep=torch.full((batch,), 500.0),
        return_dict=False,
    )


def _hunyuan() -> nn.Module:
    from diffusers import HunyuanVideoTransformer3DModel

    return HunyuanVideoTransformer3DModel(
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


def _cogvideox() -> nn.Module:
    from diffusers import CogVideoXTransformer3DModel

    return CogVideoXTransformer3DModel(
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
    )


def _cogvideox_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 3, 4, 8, 8),
        encoder_hidden_states=_randn(gen, batch, 8, 16),
        timestep=torch.full((batch,), 500),
        return_dict=False,
    )


def _ltx() -> nn.Module:
    from diffusers import LTXVideoTransformer3DModel

    return LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=2,
        caption_channels=16,
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


def _latte() -> nn.Module:
    from diffusers import LatteTransformer3DModel

    return LatteTransformer3DModel(
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
    )


def _latte_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        hidden_states=_randn(gen, batch, 4, 2, 8, 8),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        timestep=torch.full((batch,), 500),
        enable_temporal_attentions=True,
        return_dict=False,
    )


def _unet2d_condition() -> nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
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
    )


def _unet2d_condition_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(
        sample=_randn(gen, batch, 4, 8, 8),
        timestep=torch.full((batch,), 500),
        encoder_hidden_states=_randn(gen, batch, 5, 16),
        return_dict=False,
    )


def _unet2d() -> nn.Module:
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=4,
    )


def _unet2d_inputs(batch: int, gen: torch.Generator) -> dict:
    return dict(sample=_randn(gen, batch, 3, 8, 8), timestep=torch.full((batch,), 500), return_dict=False)


TINY_MODELS: dict[str, TinyModel] = {
    tm.class_name: tm
    for tm in (
        TinyModel("FluxTransformer2DModel", _flux, _flux_inputs, 1.0),
        TinyModel("SD3Transformer2DModel", _sd3, _sd3_inputs),
        TinyModel("PixArtTransformer2DModel", _pixart, _pixart_inputs),
        TinyModel("DiTTransformer2DModel", _dit, _dit_inputs),
        TinyModel("QwenImageTransformer2DModel", _qwen, _qwen_inputs, 1.0),
        TinyModel("SanaTransformer2DModel", _sana, _sana_inputs),
        TinyModel("WanTransformer3DModel", _wan, _wan_inputs),
        TinyModel("HunyuanVideoTransformer3DModel", _hunyuan, _hunyuan_inputs),
        TinyModel("CogVideoXTransformer3DModel", _cogvideox, _cogvideox_inputs),
        TinyModel("LTXVideoTransformer3DModel", _ltx, _ltx_inputs),
        TinyModel("LatteTransformer3DModel", _latte, _latte_inputs),
        TinyModel("UNet2DConditionModel", _unet2d_condition, _unet2d_condition_inputs),
        TinyModel("UNet2DModel", _unet2d, _unet2d_inputs),
    )
}


def build_tiny(class_name: str, seed: int = 0) -> nn.Module:
    """The tiny model of `class_name`, randomly initialised with `seed`, in eval mode."""
    torch.manual_seed(seed)
    return TINY_MODELS[class_name].build().eval()


def tiny_inputs(class_name: str, batch: int = 1, seed: int = 0) -> dict:
    """A valid set of forward inputs for the tiny model of `class_name`."""
    return TINY_MODELS[class_name].make_inputs(batch, torch.Generator().manual_seed(seed))


def at_step(class_name: str, inputs: dict, step: int, num_steps: int) -> dict:
    """`inputs` with the timestep of denoising step `step` of `num_steps` (decreasing, as in a sampler)."""
    tiny = TINY_MODELS[class_name]
    value = tiny.timestep_scale * (1.0 - step / num_steps)
    t = inputs["timestep"]
    return {**inputs, "timestep": torch.full_like(t, value if t.is_floating_point() else round(value))}
