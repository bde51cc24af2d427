"""More tiny diffusers pipelines from local components: SD3, Qwen-Image, HunyuanVideo, CogVideoX, LTX-Video.

Companion of :mod:`diffaccel.testing.tiny_pipelines` (FLUX, Wan, Stable Diffusion), built the same way: the real
pipeline class, its real transformer, VAE and scheduler classes at a size that runs in well under a second per
step on a CPU, text encoders randomly initialised from tiny configs, and word-level tokenizers built in memory
(:func:`tiny_tokenizer`). Nothing is downloaded.

What the tokenizers cannot reproduce: the real checkpoints' vocabularies. A word-level tokenizer maps every
word it does not know to ``<unk>``, so the prompt *templates* that Qwen-Image and HunyuanVideo wrap around a
prompt (and whose first 34 / 95 tokens the pipelines crop away by position) tokenize to a different number of
tokens than with the real BPE tokenizers. Shapes and code paths are those of the real pipelines; which tokens
survive the crop is not. The text encoders are the real classes: ``Qwen2_5_VLForConditionalGeneration`` (with
its vision tower, built tiny and unused by text-to-image), ``LlamaModel`` + ``CLIPTextModel`` for HunyuanVideo,
T5 for SD3 / CogVideoX / LTX.

Each builder's docstring gives call arguments that run (sizes the VAE and patching accept).
"""

from __future__ import annotations

import torch

from .tiny_models import tiny_model
from .tiny_pipelines import (
    FLUX_VAE_OVERRIDES,
    tiny_autoencoder_kl,
    tiny_clip_text_encoder,
    tiny_t5_encoder,
    tiny_tokenizer,
)

#: token ids above the tiny tokenizers' vocabulary, given to Qwen2.5-VL's image/video/vision special tokens so
#: that a text prompt never contains them (the model then takes its text-only rotary-position path)
_QWEN_VOCAB = 64
_QWEN_SPECIAL_IDS = dict(image_token_id=60, video_token_id=61, vision_start_token_id=62, vision_end_token_id=63)


def tiny_sd3_pipeline(seed: int = 0):
    """`StableDiffusion3Pipeline` (guidance as one doubled batch) with a 2-block `SD3Transformer2DModel`, two
    CLIP-with-projection encoders, T5 and a tiny VAE. Generate at height = width = 32, `max_sequence_length=16`."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        StableDiffusion3Pipeline,
    )

    torch.manual_seed(seed)
    # pooled projections are the two CLIP projections concatenated (16 + 16); the prompt embeddings are the CLIP
    # hidden states (16 + 16, zero-padded to T5's width 32) followed by T5's tokens
    transformer = tiny_model("SD3Transformer2DModel", sample_size=16, joint_attention_dim=32, pooled_projection_dim=32)
    vae = tiny_autoencoder_kl(**FLUX_VAE_OVERRIDES)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae.eval(),
        text_encoder=tiny_clip_text_encoder(16, max_positions=77, with_projection=True),
        tokenizer=tiny_tokenizer(77),
        text_encoder_2=tiny_clip_text_encoder(16, max_positions=77, with_projection=True),
        tokenizer_2=tiny_tokenizer(77),
        text_encoder_3=tiny_t5_encoder(32),
        tokenizer_3=tiny_tokenizer(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _tiny_qwen2_5_vl(hidden: int = 16):
    """A 2-layer `Qwen2_5_VLForConditionalGeneration` (text model and a 1-block vision tower) from a local config."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    head_dim = 8  # hidden / heads; multimodal rotary sections (temporal, height, width) must sum to head_dim / 2
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=_QWEN_VOCAB,
            hidden_size=hidden,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=hidden // head_dim,
            num_key_value_heads=hidden // head_dim,
            max_position_embeddings=256,
            rope_theta=1_000_000.0,
            rope_scaling=dict(type="default", rope_type="default", mrope_section=[1, 1, 2]),
            pad_token_id=0,
            bos_token_id=3,
            eos_token_id=2,
        ),
        vision_config=dict(
            depth=1,
            hidden_size=16,
            intermediate_size=16,
            num_heads=2,
            out_hidden_size=hidden,
            fullatt_block_indexes=[0],
        ),
        vocab_size=_QWEN_VOCAB,
        **_QWEN_SPECIAL_IDS,
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def tiny_qwen_image_pipeline(seed: int = 0):
    """`QwenImagePipeline` (true CFG as two calls under cache_context when a negative prompt is given) with a
    2-block `QwenImageTransformer2DModel`, a tiny Qwen2.5-VL text encoder and a tiny `AutoencoderKLQwenImage`.
    Generate at height = width = 32 with `max_sequence_length=16`."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
    )

    torch.manual_seed(seed)
    z_dim = 4
    transformer = tiny_model(
        "QwenImageTransformer2DModel", in_channels=4 * z_dim, out_channels=z_dim, guidance_embeds=False
    )
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=z_dim,
        dim_mult=[1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
    )
    pipe = QwenImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae.eval(),
        text_encoder=_tiny_qwen2_5_vl(16),
        tokenizer=tiny_tokenizer(256),
        transformer=transformer.eval(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_hunyuan_video_pipeline(seed: int = 0):
    """`HunyuanVideoPipeline` (guidance-distilled: one call per step) with a 1+2-block
    `HunyuanVideoTransformer3DModel`, a tiny `LlamaModel` + `CLIPTextModel` and a tiny `AutoencoderKLHunyuanVideo`
    (8x spatial, 4x temporal compression). Generate 5 frames at 16x16 with `max_sequence_length=16`."""
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoPipeline,
    )
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(seed)
    transformer = tiny_model("HunyuanVideoTransformer3DModel", guidance_embeds=True)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )
    # the pipeline crops the first 95 tokens (its prompt template) and reads hidden_states[-3]: >= 2 layers,
    # positions for 95 + max_sequence_length tokens
    llama = LlamaModel(
        LlamaConfig(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=256,
            pad_token_id=0,
            bos_token_id=3,
            eos_token_id=2,
        )
    ).eval()
    # CLIP reads 77 tokens (fixed in the pipeline) and gives the pooled vector
    clip = tiny_clip_text_encoder(8, max_positions=77)
    pipe = HunyuanVideoPipeline(
        text_encoder=llama,
        tokenizer=tiny_tokenizer(256),
        transformer=transformer.eval(),
        vae=vae.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=clip,
        tokenizer_2=tiny_tokenizer(77),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_cogvideox_pipeline(seed: int = 0):
    """`CogVideoXPipeline` (guidance as one doubled batch) with a 2-block `CogVideoXTransformer3DModel`, T5 and a
    tiny `AutoencoderKLCogVideoX` (8x spatial, 4x temporal compression). Generate 5 frames at 16x16 with
    `max_sequence_length=16`."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline

    torch.manual_seed(seed)
    # attention heads x head dim must be divisible by 16 for the 3-D sincos position embedding
    transformer = tiny_model(
        "CogVideoXTransformer3DModel",
        attention_head_dim=16,
        text_embed_dim=32,
        sample_width=2,
        sample_height=2,
        sample_frames=5,
        max_text_seq_length=16,
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    scheduler = CogVideoXDDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        snr_shift_scale=3.0,
        clip_sample=False,
    )
    pipe = CogVideoXPipeline(
        tokenizer=tiny_tokenizer(),
        text_encoder=tiny_t5_encoder(32),
        vae=vae.eval(),
        transformer=transformer.eval(),
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_ltx_pipeline(seed: int = 0):
    """`LTXPipeline` (guidance as one doubled batch) with a 2-block `LTXVideoTransformer3DModel`, T5 and a tiny
    `AutoencoderKLLTXVideo` (4x spatial, 4x temporal compression). Generate 9 frames at 32x32 with
    `max_sequence_length=16`."""
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
    )

    torch.manual_seed(seed)
    transformer = tiny_model("LTXVideoTransformer3DModel", caption_channels=32)
    scaling = (True, True, False, False)  # two 2x spatio-temporal stages: 4x in space and time
    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=scaling,
        decoder_spatio_temporal_scaling=scaling,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae.eval(),
        text_encoder=tiny_t5_encoder(32),
        tokenizer=tiny_tokenizer(),
        transformer=transformer.eval(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
