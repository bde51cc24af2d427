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
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from .common import ClassConditionalZooPipeline, place
from .data import PHOTO_CLASS_NAMES, photo_crop_bank

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
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_schedule="squaredcos_cap_v2",
    prediction_type="v_prediction",
    clip_sample=True,
    timestep_spacing="trailing",
)
# Chosen by looking at samples of the committed weights (docs/zoo/unet-photos.png): 1.5 keeps the doubled-batch
# guidance path in use; at 2 and above some crops pick up colour noise (see the manifest's accuracy per scale).
DEFAULT_GUIDANCE_SCALE = 1.5


class UNetPhotosPipeline(ClassConditionalZooPipeline):
    """Class-conditional UNet sampler (DDIM, doubled-batch guidance) on 32x32 photo crops.

    ``pipe(num_inference_steps=20, generator=g)`` draws one crop per photo class; ``class_labels`` takes ids or
    photo names. Output images are RGB 32x32 in [0, 1].
    """

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: DDIMScheduler,
        class_names: Sequence[str] = PHOTO_CLASS_NAMES,
        default_guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    ):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(class_names=list(class_names), default_guidance_scale=default_guidance_scale)

    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | str | Sequence[int | str] | torch.Tensor | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        self.check_call_arguments(num_inference_steps, output_type)
        labels = self.class_label_ids(class_labels)
        guidance_scale = self.resolve_guidance_scale(guidance_scale)
        samples = self.sample_ddim_with_doubled_batch_guidance(
            self.unet, self.predict_velocity, labels, guidance_scale, num_inference_steps, generator, eta
        )
        return self.to_output(samples / 2 + 0.5, output_type, return_dict)

    def predict_velocity(self, model_input: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The UNet called as the Stable Diffusion pipelines call it: the scalar timestep, broadcast by the UNet."""
        return self.unet(model_input, t, class_labels=labels).sample


def build_components() -> dict[str, torch.nn.Module]:
    return {"unet": UNet2DModel(**UNET_CONFIG)}


class UNetPhotosTraining:
    """Training recipe used by :mod:`diffaccel.zoo.train` (DDPM v-prediction loss, per-sample label dropout)."""

    name = NAME
    seed = 0
    steps = 2000
    batch_size = 32
    learning_rate = 5e-4
    warmup_steps = 200
    ema_decay = 0.998
    label_dropout = 0.1

    def __init__(self):
        self.noise_scheduler = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if k != "timestep_spacing"})
        images, labels = photo_crop_bank(PHOTO_CLASS_NAMES, crops_per_class=512, size=IMAGE_SIZE, seed=self.seed)
        self.images = images * 2 - 1
        self.labels = labels

    def build(self) -> dict[str, torch.nn.Module]:
        return build_components()

    def loss(self, components: dict[str, torch.nn.Module], generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(0, len(self.labels), (self.batch_size,), generator=generator)
        clean, labels = self.images[index], self.labels[index]
        drop = torch.rand(self.batch_size, generator=generator) < self.label_dropout
        labels = torch.where(drop, torch.full_like(labels, len(PHOTO_CLASS_NAMES)), labels)
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (self.batch_size,), generator=generator)
        noisy = self.noise_scheduler.add_noise(clean, noise, timesteps)
        prediction = components["unet"](noisy, timesteps, class_labels=labels).sample
        return torch.nn.functional.mse_loss(prediction, self.noise_scheduler.get_velocity(clean, noise, timesteps))

    def config(self, components: dict[str, torch.nn.Module]) -> dict:
        from .weights_io import model_config

        return {
            "components": {"unet": model_config(components["unet"])},
            "scheduler": {"class": "DDIMScheduler", "config": SCHEDULER_CONFIG},
            "pipeline": self.pipeline_config(),
        }

    def evaluate(self, folder) -> dict:
        """Nearest-photo accuracy of full-step samples (:mod:`diffaccel.zoo.photo_score`)."""
        from .photo_score import evaluate_photo_pipeline

        return evaluate_photo_pipeline(load(folder), num_inference_steps=50)

    def pipeline_config(self) -> dict:
        return {"class_names": list(PHOTO_CLASS_NAMES), "default_guidance_scale": DEFAULT_GUIDANCE_SCALE}


def load(folder, device="cpu", dtype=torch.float32) -> UNetPhotosPipeline:
    from .weights_io import load_state_into, read_json

    config = read_json(folder / "config.json")
    unet = UNet2DModel.from_config(config["components"]["unet"]["config"])
    load_state_into(folder / "model.safetensors", {"unet": unet})
    scheduler = DDIMScheduler.from_config(config["scheduler"]["config"])
    unet = place(unet, device, dtype)
    return UNetPhotosPipeline(
        unet,
        scheduler,
        class_names=config["pipeline"]["class_names"],
        default_guidance_scale=config["pipeline"].get("default_guidance_scale", DEFAULT_GUIDANCE_SCALE),
    )
