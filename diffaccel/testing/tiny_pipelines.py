"""Tiny diffusers pipelines assembled from locally built components (no hub access at all).

Text encoders are randomly initialised from tiny configs and tokenizers are word-level
`PreTrainedTokenizerFast`s built in memory, so the real pipeline classes run end to end: prompt
encoding, the denoising loop with its guidance style, the scheduler and the VAE decode.
"""

from __future__ import annotations

import torch

from .tiny_models import tiny_model

_WORDS = ("a photo of cat dog red blue house tree sky sea the on in with small large bright dark").split()


def tiny_tokenizer(max_length: int = 16):
    """A word-level fast tokenizer with pad, unk, bos and eos tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<eos>": 2, "<bos>": 3}
    vocab.update({w: i + 4 for i, w in enumerate(_WORDS)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<eos>",
        bos_token="<bos>",
        model_max_length=max_length,
    )


def tiny_clip_text_encoder(hidden: int = 32, max_positions: int = 16, with_projection: bool = False):
    """A 2-layer CLIP text encoder on the tiny tokenizer's ids; `with_projection` gives
    `CLIPTextModelWithProjection` (the pooled, projected output SD3 reads)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    model_cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return model_cls(
        CLIPTextConfig(
            vocab_size=64,
            hidden_size=hidden,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=max_positions,
            eos_token_id=2,
            bos_token_id=3,
            pad_token_id=0,
            projection_dim=hidden,
        )
    ).eval()


# A two-level AutoencoderKL (2x down-sampling, 4 latent channels).
TINY_VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=(8, 16),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=4,
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
)
# What FLUX and SD3 add: their VAE's latent shift and scale, and no quant convolutions.
FLUX_VAE_OVERRIDES = dict(shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False)


def tiny_autoencoder_kl(**overrides):
    """The tiny `AutoencoderKL` (`TINY_VAE_CONFIG`), with `overrides` replacing entries."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**{**TINY_VAE_CONFIG, **overrides})


def tiny_t5_encoder(d_model: int = 32, umt5: bool = False):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    cfg_cls, model_cls = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    return model_cls(
        cfg_cls(
            vocab_size=64,
            d_model=d_model,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=2,
        )
    ).eval()


def tiny_flux_pipeline(seed: int = 0):
    """`FluxPipeline` with a 2+2-block `FluxTransformer2DModel`, CLIP + T5 text encoders and a tiny VAE.
    Generate at height = width = 16 with `max_sequence_length=16`."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    torch.manual_seed(seed)
    transformer = tiny_model("FluxTransformer2DModel", in_channels=16)
    vae = tiny_autoencoder_kl(**FLUX_VAE_OVERRIDES)
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae.eval(),
        text_encoder=tiny_clip_text_encoder(),
        tokenizer=tiny_tokenizer(),
        text_encoder_2=tiny_t5_encoder(),
        tokenizer_2=tiny_tokenizer(),
        transformer=transformer.eval(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_wan_pipeline(seed: int = 0):
    """`WanPipeline` (true CFG as two calls under cache_context) with tiny UMT5, Wan transformer and VAE.
    Generate 5 frames at 16×16 with `max_sequence_length=16`."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline

    torch.manual_seed(seed)
    transformer = tiny_model("WanTransformer3DModel", in_channels=16, out_channels=16, text_dim=32)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    pipe = WanPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=tiny_t5_encoder(umt5=True),
        transformer=transformer.eval(),
        vae=vae.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sd_pipeline(seed: int = 0):
    """`StableDiffusionPipeline` (guidance as one doubled batch) with a tiny UNet2DConditionModel."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    torch.manual_seed(seed)
    unet = tiny_model("UNet2DConditionModel", cross_attention_dim=32)
    vae = tiny_autoencoder_kl()
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=tiny_clip_text_encoder(),
        tokenizer=tiny_tokenizer(),
        unet=unet.eval(),
        scheduler=DDIMScheduler(steps_offset=1, clip_sample=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
