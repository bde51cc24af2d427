"""``pixart-photos``: a tiny :class:`diffusers.PixArtTransformer2DModel` on the same 32x32 photo crops as ``flux-photos``.

A validation model: the presets and tuned schedules are chosen on ``flux-photos`` and ``wan-clips`` and only
reported here, never tuned on it. It differs from ``flux-photos`` in the places a schedule can depend on: the
architecture (PixArt-alpha blocks: self-attention, cross-attention to the prompt tokens, adaLN-single timestep
modulation; Chen et al. 2023), the noise process (DDPM v-prediction with the cosine schedule, DDIM sampling with
trailing timesteps instead of rectified flow with Euler) and the guidance style (ONE doubled batch
``[cond; uncond]`` per step, as ``PixArtAlphaPipeline`` does, instead of two ``cache_context`` calls).

There is no VAE: pixels in [-1, 1] go straight into the patch embedding (patch 4: 64 tokens, the tokens of
``flux-photos``; patch 2 trained four times slower on one CPU thread). Conditioning is
"which photo": :class:`~diffaccel.zoo.flux_photos.PhotoClassEmbedder` (without the pooled vector) maps a class id
to learned prompt tokens fed through PixArt's caption projection; id ``num_classes`` is the learned empty prompt
of the unconditional branch. The sampling loop is the one the DDIM zoo models share
(:class:`~diffaccel.zoo.common.DDIMClassConditionalPipeline`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import DDIMScheduler, PixArtTransformer2DModel

from .common import COSINE_V_PREDICTION_SCHEDULER, DDIMClassConditionalPipeline, DDPMVelocityTraining
from .data import PHOTO_CLASS_NAMES, photo_training_samples
from .flux_photos import PhotoClassEmbedder

NAME = "pixart-photos"
IMAGE_SIZE = 32
TEXT_TOKENS = 4
CAPTION_CHANNELS = 64

TRANSFORMER_CONFIG = dict(
    num_attention_heads=4,
    attention_head_dim=32,
    in_channels=3,
    out_channels=3,
    num_layers=4,
    cross_attention_dim=128,
    sample_size=IMAGE_SIZE,
    patch_size=4,
    caption_channels=CAPTION_CHANNELS,
)
SCHEDULER_CONFIG = COSINE_V_PREDICTION_SCHEDULER
DEFAULT_GUIDANCE_SCALE = 1.5
# PixArt's resolution / aspect-ratio conditioning is used only by the 1024px models (``sample_size == 128``).
_NO_ADDED_CONDITIONS = {"resolution": None, "aspect_ratio": None}


def call_transformer(
    transformer: PixArtTransformer2DModel,
    class_embedder: PhotoClassEmbedder,
    model_input: torch.Tensor,
    timesteps: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """The transformer called as ``PixArtAlphaPipeline`` calls it: prompt tokens, one timestep per sample."""
    prompt_embeds, _ = class_embedder(labels)
    return transformer(
        model_input,
        encoder_hidden_states=prompt_embeds.to(transformer.dtype),
        timestep=timesteps.expand(model_input.shape[0]),
        added_cond_kwargs=_NO_ADDED_CONDITIONS,
        return_dict=False,
    )[0]


class PixArtPhotosPipeline(DDIMClassConditionalPipeline):
    """Class-conditional PixArt sampler (DDIM, doubled-batch guidance) on 32x32 photo crops.

    ``pipe(num_inference_steps=20, generator=g)`` draws one crop per photo class; ``class_labels`` takes ids or
    photo names. Output images are RGB 32x32 in [0, 1].
    """

    denoiser_name = "transformer"
    component_classes = {"transformer": PixArtTransformer2DModel, "class_embedder": PhotoClassEmbedder}
    scheduler_class = DDIMScheduler

    def __init__(
        self,
        transformer: PixArtTransformer2DModel,
        scheduler: DDIMScheduler,
        class_embedder: PhotoClassEmbedder,
        class_names: Sequence[str] = PHOTO_CLASS_NAMES,
        default_guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    ):
        components = dict(transformer=transformer, scheduler=scheduler, class_embedder=class_embedder)
        super().__init__(components, class_names, default_guidance_scale=default_guidance_scale)

    def predict_velocity(self, model_input: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return call_transformer(self.transformer, self.class_embedder, model_input, t, labels)


def build_components(num_classes: int = len(PHOTO_CLASS_NAMES)) -> dict[str, torch.nn.Module]:
    return {
        "transformer": PixArtTransformer2DModel(**TRANSFORMER_CONFIG),
        "class_embedder": PhotoClassEmbedder(num_classes, TEXT_TOKENS, CAPTION_CHANNELS, None),
    }


class PixArtPhotosTraining(DDPMVelocityTraining):
    """Training recipe used by :mod:`diffaccel.zoo.train` (DDPM v-prediction loss, per-sample label dropout)."""

    name = NAME
    class_names = PHOTO_CLASS_NAMES
    scheduler_config = SCHEDULER_CONFIG
    default_guidance_scale = DEFAULT_GUIDANCE_SCALE
    steps = 4000
    batch_size = 32
    learning_rate = 1e-3
    warmup_steps = 200
    ema_decay = 0.998

    def training_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        return photo_training_samples(IMAGE_SIZE, self.seed)

    def predict(self, components, noisy, timesteps, labels):
        return call_transformer(components["transformer"], components["class_embedder"], noisy, timesteps, labels)

    def build(self) -> dict[str, torch.nn.Module]:
        return build_components()

    def evaluate(self, folder) -> dict:
        """Nearest-photo accuracy of full-step samples (:mod:`diffaccel.zoo.photo_score`)."""
        from .photo_score import evaluate_photo_pipeline

        return evaluate_photo_pipeline(load(folder), num_inference_steps=50)

    def after_training(self, folder, components) -> dict:
        return self.evaluate(folder)


def load(folder, device="cpu", dtype=torch.float32) -> PixArtPhotosPipeline:
    return PixArtPhotosPipeline.from_weights_folder(folder, device=device, dtype=dtype)
