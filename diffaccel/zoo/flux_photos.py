"""``flux-photos``: a tiny :class:`diffusers.FluxTransformer2DModel` trained with flow matching on 32x32 photo crops.

The project's default zoo model. Data: square crops of the photos shipped in scikit-image and scikit-learn
(:data:`diffaccel.zoo.data.PHOTO_SOURCES`), downscaled to 32x32 RGB. There is no VAE: pixels in [-1, 1] are packed
into 4x4 patches (64 tokens of 48 channels; the layout of ``FluxPipeline._pack_latents`` with patch 4 instead of 2,
since a Flux latent pixel stands for an 8x8 patch of the image) with the same 3-axis position ids as Flux.

Conditioning is "which photo": :class:`PhotoClassEmbedder` maps a class id to learned text tokens (fed as
``encoder_hidden_states``) and a learned pooled vector (``pooled_projections``); id ``num_classes`` is the learned
empty prompt used by guidance. Guidance follows ``FluxPipeline``'s true CFG: TWO transformer calls per step,
under ``transformer.cache_context("cond")`` and ``cache_context("uncond")``, so this pipeline exercises that style.

Training (rectified flow, as Flux): ``x_t = (1 - t) x_0 + t * noise``, target ``noise - x_0``, ``t`` uniform in
[0, 1] (a first run with SD3's logit-normal ``t`` rarely saw low noise levels and left 4x4 patch seams); sampling uses ``FlowMatchEulerDiscreteScheduler`` with the
``FluxPipeline`` sigmas ``linspace(1, 1/N, N)`` and no resolution shift (every image has the same 64 tokens).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from .common import ClassConditionalZooPipeline, RectifiedFlowTraining
from .data import PHOTO_CLASS_NAMES, photo_training_samples

NAME = "flux-photos"
IMAGE_SIZE = 32
PIXEL_PATCH = 4
TEXT_TOKENS = 4

TRANSFORMER_CONFIG = dict(
    patch_size=1,
    in_channels=3 * PIXEL_PATCH * PIXEL_PATCH,
    out_channels=None,
    num_layers=2,
    num_single_layers=4,
    attention_head_dim=32,
    num_attention_heads=4,
    joint_attention_dim=64,
    pooled_projection_dim=64,
    guidance_embeds=False,
    axes_dims_rope=[8, 12, 12],
)
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
DEFAULT_GUIDANCE_SCALE = 2.0


class PhotoClassEmbedder(ModelMixin, ConfigMixin):
    """Class id -> (``encoder_hidden_states`` ``(B, text_tokens, joint_dim)``, ``pooled_projections`` ``(B, pooled_dim)``).

    Stands in for Flux's T5 and CLIP text encoders: a learned token sequence and a learned pooled vector per class,
    plus one extra row (id ``num_classes``) for the empty prompt of the unconditional branch. A diffusers
    ``ModelMixin`` so that pipeline device/dtype handling and offloading treat it like any other component.
    ``pooled_projection_dim=None`` leaves out the pooled vector (models with no pooled input, such as PixArt);
    ``forward`` then returns ``None`` in its place.
    """

    @register_to_config
    def __init__(self, num_classes: int, text_tokens: int, joint_attention_dim: int, pooled_projection_dim: int | None):
        super().__init__()
        self.text_tokens, self.joint_attention_dim = text_tokens, joint_attention_dim
        # Creation and initialisation order fixed (both tables, then both inits): the seeded recipes reproduce
        # the committed weights bit for bit only with this order of random draws.
        self.token_table = nn.Embedding(num_classes + 1, text_tokens * joint_attention_dim)
        self.pooled_table = None
        if pooled_projection_dim is not None:
            self.pooled_table = nn.Embedding(num_classes + 1, pooled_projection_dim)
        nn.init.normal_(self.token_table.weight, std=0.02)
        if self.pooled_table is not None:
            nn.init.normal_(self.pooled_table.weight, std=0.02)

    def forward(self, class_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        tokens = self.token_table(class_ids).view(-1, self.text_tokens, self.joint_attention_dim)
        return tokens, None if self.pooled_table is None else self.pooled_table(class_ids)


def pack_pixels(images: torch.Tensor, patch: int = PIXEL_PATCH) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, (H/p)(W/p), C p p)``, channel-major within a patch like ``FluxPipeline._pack_latents``."""
    batch, channels, height, width = images.shape
    images = images.view(batch, channels, height // patch, patch, width // patch, patch)
    return images.permute(0, 2, 4, 1, 3, 5).reshape(
        batch, (height // patch) * (width // patch), channels * patch * patch
    )


def unpack_pixels(tokens: torch.Tensor, height: int, width: int, patch: int = PIXEL_PATCH) -> torch.Tensor:
    """Inverse of :func:`pack_pixels`."""
    batch, _, features = tokens.shape
    channels = features // (patch * patch)
    tokens = tokens.view(batch, height // patch, width // patch, channels, patch, patch)
    return tokens.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, height, width)


def image_position_ids(height_tokens: int, width_tokens: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Flux's 3-axis ids ``(0, row, col)`` per image token, shape ``(rows * cols, 3)``."""
    ids = torch.zeros(height_tokens, width_tokens, 3)
    ids[..., 1] = torch.arange(height_tokens)[:, None]
    ids[..., 2] = torch.arange(width_tokens)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


class FluxPhotosPipeline(ClassConditionalZooPipeline):
    """Flux-architecture sampler on 32x32 photo crops, with two-call (``cache_context``) classifier-free guidance.

    ``pipe(num_inference_steps=20, generator=g)`` draws one crop per photo class; ``class_labels`` takes ids or
    photo names (``pipe.class_names``). Output images are RGB 32x32 in [0, 1].
    """

    component_classes = {"transformer": FluxTransformer2DModel, "class_embedder": PhotoClassEmbedder}
    scheduler_class = FlowMatchEulerDiscreteScheduler

    def __init__(
        self,
        transformer: FluxTransformer2DModel,
        scheduler: FlowMatchEulerDiscreteScheduler,
        class_embedder: PhotoClassEmbedder,
        class_names: Sequence[str] = PHOTO_CLASS_NAMES,
        image_size: int = IMAGE_SIZE,
        pixel_patch: int = PIXEL_PATCH,
        default_guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    ):
        components = dict(transformer=transformer, scheduler=scheduler, class_embedder=class_embedder)
        settings = dict(image_size=image_size, pixel_patch=pixel_patch, default_guidance_scale=default_guidance_scale)
        super().__init__(components, class_names, **settings)

    def transformer_condition(self, class_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """The learned prompt tokens and pooled vector of each class, with Flux's text and image position ids."""
        dtype, device = self.transformer.dtype, self._execution_device
        prompt_embeds, pooled_embeds = self.class_embedder(class_ids)
        tokens = self.config.image_size // self.config.pixel_patch
        return {
            "pooled_projections": pooled_embeds.to(dtype),
            "encoder_hidden_states": prompt_embeds.to(dtype),
            "txt_ids": torch.zeros(self.class_embedder.text_tokens, 3, device=device, dtype=dtype),
            "img_ids": image_position_ids(tokens, tokens, device=device, dtype=dtype),
        }

    def call_transformer(self, context, step, latents, t, condition) -> torch.Tensor:
        """As ``FluxPipeline`` calls it: ``cache_context(context)`` without step keywords, the timestep as a
        fraction of 1000."""
        timestep = t.expand(latents.shape[0]).to(self.transformer.dtype) / 1000
        with self.transformer.cache_context(context):
            return self.transformer(hidden_states=latents, timestep=timestep, **condition, return_dict=False)[0]

    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | str | Sequence[int | str] | torch.Tensor | None = None,
        num_inference_steps: int = 28,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        self.check_call_arguments(num_inference_steps, output_type)
        labels = self.class_label_ids(class_labels)
        guidance_scale = self.resolve_guidance_scale(guidance_scale)
        device, dtype = self._execution_device, self.transformer.dtype
        size, patch = self.config.image_size, self.config.pixel_patch
        noise = randn_tensor((len(labels), 3, size, size), generator=generator, device=device, dtype=dtype)
        sigmas = np.linspace(1.0, 1.0 / num_inference_steps, num_inference_steps)
        self.scheduler.set_timesteps(sigmas=sigmas, device=device)
        latents = self.sample_flow_with_two_call_guidance(pack_pixels(noise, patch), labels, guidance_scale)
        images = unpack_pixels(latents, size, size, patch)
        return self.to_output(images / 2 + 0.5, output_type, return_dict)


def build_components(num_classes: int = len(PHOTO_CLASS_NAMES)) -> dict[str, nn.Module]:
    return {
        "transformer": FluxTransformer2DModel(**TRANSFORMER_CONFIG),
        "class_embedder": PhotoClassEmbedder(
            num_classes,
            TEXT_TOKENS,
            TRANSFORMER_CONFIG["joint_attention_dim"],
            TRANSFORMER_CONFIG["pooled_projection_dim"],
        ),
    }


class FluxPhotosTraining(RectifiedFlowTraining):
    """Training recipe used by :mod:`diffaccel.zoo.train` (rectified-flow velocity loss with ``t`` uniform in
    [0, 1], per-sample label dropout)."""

    name = NAME
    class_names = PHOTO_CLASS_NAMES
    scheduler_config = SCHEDULER_CONFIG
    default_guidance_scale = DEFAULT_GUIDANCE_SCALE
    pipeline_settings = {"image_size": IMAGE_SIZE, "pixel_patch": PIXEL_PATCH}
    # The crop bank is drawn with its own seed, fixed: ``--seed`` (and ``flux-photos-b``) changes the
    # initialisation and the batches, not the training photos.
    data_seed = 0
    steps = 4000
    batch_size = 32
    learning_rate = 1e-3
    warmup_steps = 200
    ema_decay = 0.998

    def __init__(self):
        super().__init__()
        self.img_ids = image_position_ids(IMAGE_SIZE // PIXEL_PATCH, IMAGE_SIZE // PIXEL_PATCH)
        self.txt_ids = torch.zeros(TEXT_TOKENS, 3)

    def training_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        samples, labels = photo_training_samples(IMAGE_SIZE, self.data_seed)
        return pack_pixels(samples), labels

    def build(self) -> dict[str, nn.Module]:
        return build_components()

    def noise_levels(self, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(self.batch_size, generator=generator)

    def predict(self, components, noisy, t, labels):
        prompt_embeds, pooled_embeds = components["class_embedder"](labels)
        return components["transformer"](
            hidden_states=noisy,
            timestep=t,
            pooled_projections=pooled_embeds,
            encoder_hidden_states=prompt_embeds,
            txt_ids=self.txt_ids,
            img_ids=self.img_ids,
            return_dict=False,
        )[0]

    def evaluate(self, folder) -> dict:
        """Nearest-photo accuracy of full-step samples (:mod:`diffaccel.zoo.photo_score`)."""
        from .photo_score import evaluate_photo_pipeline

        return evaluate_photo_pipeline(load(folder), num_inference_steps=28)


class FluxPhotosBTraining(FluxPhotosTraining):
    """``flux-photos-b``, a validation model: this module's recipe retrained with another seed (1) for 2400 steps,
    on the same crops. Presets and tuned schedules are chosen on ``flux-photos`` and ``wan-clips`` and only
    reported on it. ``python -m diffaccel.zoo.train flux-photos-b`` is
    ``python -m diffaccel.zoo.train flux-photos --seed 1 --steps 2400`` under another name."""

    name = "flux-photos-b"
    seed = 1
    steps = 2400


def load(folder, device="cpu", dtype=torch.float32) -> FluxPhotosPipeline:
    return FluxPhotosPipeline.from_weights_folder(folder, device=device, dtype=dtype)
