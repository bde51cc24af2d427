"""``unet-photos``: a tiny class-conditional :class:`diffusers.UNet2DModel` on the same 32x32 photo crops.

Exists so that UNet caching is measured on a trained model too. Conditioning uses the UNet's own class embedding
(``num_class_embeds = num_classes + 1``; the last id is the null class for guidance). Training is DDPM
(v-prediction, ``squaredcos_cap_v2``); sampling is DDIM with classifier-free guidance as ONE doubled batch
``[cond; uncond]`` per step, the Stable Diffusion style (the loop is shared with ``dit-digits``, see
:meth:`~diffaccel.zoo.common.ClassConditionalZooPipeline.sample_ddim_with_doubled_batch_guidance`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import DDIMScheduler, UNet2DModel

from .common import COSINE_V_PREDICTION_SCHEDULER, DDIMClassConditionalPipeline, DDPMVelocityTraining
from .data import PHOTO_CLASS_NAMES, photo_training_samples

NAME = "unet-photos"
IMAGE_SIZE = 32

UNET_CONFIG = dict(
    sample_size=IMAGE_SIZE,
    in_channels=3,
    out_channels=3,
    layers_per_block=1,
    block_out_channels=[32, 64, 96],
    down_block_types=["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
    up_block_types=["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
    norm_num_groups=8,
    attention_head_dim=32,
    num_class_embeds=len(PHOTO_CLASS_NAMES) + 1,
)
SCHEDULER_CONFIG = COSINE_V_PREDICTION_SCHEDULER
# Chosen by looking at samples of the committed weights (docs/zoo/unet-photos.png): 1.5 keeps the doubled-batch
# guidance path in use; at 2 and above some crops pick up colour noise (see the manifest's accuracy per scale).
DEFAULT_GUIDANCE_SCALE = 1.5


class UNetPhotosPipeline(DDIMClassConditionalPipeline):
    """Class-conditional UNet sampler (DDIM, doubled-batch guidance) on 32x32 photo crops.

    ``pipe(num_inference_steps=20, generator=g)`` draws one crop per photo class; ``class_labels`` takes ids or
    photo names. Output images are RGB 32x32 in [0, 1].
    """

    denoiser_name = "unet"
    component_classes = {"unet": UNet2DModel}
    scheduler_class = DDIMScheduler

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: DDIMScheduler,
        class_names: Sequence[str] = PHOTO_CLASS_NAMES,
        default_guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    ):
        components = dict(unet=unet, scheduler=scheduler)
        super().__init__(components, class_names, default_guidance_scale=default_guidance_scale)

    def predict_velocity(self, model_input: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The UNet called as the Stable Diffusion pipelines call it: the scalar timestep, broadcast by the UNet."""
        return self.unet(model_input, t, class_labels=labels).sample


def build_components() -> dict[str, torch.nn.Module]:
    return {"unet": UNet2DModel(**UNET_CONFIG)}


class UNetPhotosTraining(DDPMVelocityTraining):
    """Training recipe used by :mod:`diffaccel.zoo.train` (DDPM v-prediction loss, per-sample label dropout)."""

    name = NAME
    class_names = PHOTO_CLASS_NAMES
    scheduler_config = SCHEDULER_CONFIG
    default_guidance_scale = DEFAULT_GUIDANCE_SCALE
    steps = 2000
    batch_size = 32
    learning_rate = 5e-4
    warmup_steps = 200
    ema_decay = 0.998

    def training_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        return photo_training_samples(IMAGE_SIZE, self.seed)

    def predict(self, components, noisy, timesteps, labels):
        return components["unet"](noisy, timesteps, class_labels=labels).sample

    def build(self) -> dict[str, torch.nn.Module]:
        return build_components()

    def evaluate(self, folder) -> dict:
        """Nearest-photo accuracy of full-step samples (:mod:`diffaccel.zoo.photo_score`)."""
        from .photo_score import evaluate_photo_pipeline

        return evaluate_photo_pipeline(load(folder), num_inference_steps=50)


def load(folder, device="cpu", dtype=torch.float32) -> UNetPhotosPipeline:
    return UNetPhotosPipeline.from_weights_folder(folder, device=device, dtype=dtype)
