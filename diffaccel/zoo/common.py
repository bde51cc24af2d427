"""Behaviour shared by the zoo pipelines: class-label handling, diffusers-style output conversion, and the DDIM
sampling loop with doubled-batch classifier-free guidance that ``dit-digits`` and ``unet-photos`` both use.

The zoo pipelines are ordinary :class:`diffusers.DiffusionPipeline` subclasses so that everything that works on
a hub pipeline (``diffaccel.wrap``, ``.to()``, ``set_progress_bar_config``, diffusers hooks) works on them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

OUTPUT_TYPES = ("pil", "np", "pt")


def place(module: torch.nn.Module, device, dtype: torch.dtype) -> torch.nn.Module:
    """Move a freshly loaded component to ``device`` and cast it only when ``dtype`` differs (diffusers warns on
    every dtype cast of a model), returned in eval mode."""
    module = module.to(device=device)
    if next(module.parameters()).dtype != dtype:
        module = module.to(dtype=dtype)
    return module.eval()


class ClassConditionalZooPipeline(DiffusionPipeline):
    """Base of the zoo pipelines: a fixed list of class names and the conversions every ``__call__`` needs.

    Subclasses call ``self.register_to_config(class_names=..., default_guidance_scale=...)`` in ``__init__``; the
    null (unconditional) class used for classifier-free guidance is the id ``len(class_names)``. A guidance scale
    of at most 1 skips the unconditional branch entirely.
    """

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.config.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.config.class_names)

    @property
    def default_guidance_scale(self) -> float:
        """Guidance used when a call passes none; stored with the weights (``config.json``) because the right
        scale depends on how the model was trained (see each model's manifest for accuracy per scale)."""
        return float(self.config.default_guidance_scale)

    def resolve_guidance_scale(self, guidance_scale: float | None) -> float:
        scale = self.default_guidance_scale if guidance_scale is None else float(guidance_scale)
        if not math.isfinite(scale) or scale < 0:
            raise ValueError(f"guidance_scale must be a finite number >= 0, got {guidance_scale!r}")
        return scale

    @property
    def null_class_id(self) -> int:
        """Id of the learned "no condition" embedding, the unconditional branch of guidance."""
        return self.num_classes

    def class_label_ids(self, class_labels: int | str | Sequence[int | str] | torch.Tensor | None) -> torch.Tensor:
        """Normalise ``class_labels`` to a 1-D ``LongTensor`` on the execution device.

        ``None`` means one sample per class in class order; ints are class ids, strings are class names.
        Anything out of range is an error naming the valid classes.
        """
        if class_labels is None:
            ids = list(range(self.num_classes))
        elif isinstance(class_labels, torch.Tensor):
            ids = class_labels.reshape(-1).tolist()
        elif isinstance(class_labels, (int, np.integer, str)):
            ids = [class_labels]
        else:
            ids = list(class_labels)
        resolved = []
        for label in ids:
            if isinstance(label, str):
                if label not in self.class_names:
                    raise ValueError(f"unknown class name {label!r}; classes are {list(self.class_names)}")
                resolved.append(self.class_names.index(label))
            elif isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
                raise TypeError(f"class labels must be ints or class names, got {label!r}")
            elif not 0 <= int(label) < self.num_classes:
                raise ValueError(f"class id {label} out of range 0..{self.num_classes - 1} ({list(self.class_names)})")
            else:
                resolved.append(int(label))
        if not resolved:
            raise ValueError("class_labels is empty; pass None for one sample per class")
        return torch.tensor(resolved, dtype=torch.long, device=self._execution_device)

    @staticmethod
    def check_call_arguments(num_inference_steps: int, output_type: str) -> None:
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive int, got {num_inference_steps!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")

    def sample_ddim_with_doubled_batch_guidance(
        self,
        denoiser: torch.nn.Module,
        predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
        labels: torch.Tensor,
        guidance_scale: float,
        num_inference_steps: int,
        generator: torch.Generator | None,
        eta: float,
    ) -> torch.Tensor:
        """Draw one square sample per label with ``self.scheduler`` (DDIM), returned in the model's data space.

        Classifier-free guidance runs as ONE doubled batch per step, as diffusers' ``DiTPipeline`` and the Stable
        Diffusion pipelines do: the denoiser sees ``[x; x]`` with labels ``[y; null]`` and the two halves combine as
        ``uncond + s * (cond - uncond)`` (Ho & Salimans 2022, eq. 6, with ``s = 1 + w``). A scale of at most 1 skips
        the unconditional half, so the batch is not doubled. Why it lives here: dit-digits and unet-photos sample
        the same way and differ only in how their model is called, so accelerations measured on either one see the
        same step sequence and guidance arithmetic, and a fix to the loop reaches both.

        ``denoiser`` gives the sample shape and dtype (``config.sample_size``, ``config.in_channels``); ``predict``
        is ``(model_input, t, labels) -> model output``, the model called the way its diffusers pipeline calls it.
        """
        device, dtype = self._execution_device, denoiser.dtype
        size, channels = denoiser.config.sample_size, denoiser.config.in_channels
        latents = randn_tensor((len(labels), channels, size, size), generator=generator, device=device, dtype=dtype)

        do_guidance = guidance_scale > 1.0
        if do_guidance:
            labels = torch.cat([labels, torch.full_like(labels, self.null_class_id)])

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = torch.cat([latents, latents]) if do_guidance else latents
            model_output = predict(model_input, t, labels)
            if do_guidance:
                cond, uncond = model_output.chunk(2)
                model_output = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(model_output, t, latents, eta=eta, generator=generator).prev_sample
        return latents

    def to_output(self, images: torch.Tensor, output_type: str, return_dict: bool):
        """``images``: ``(B, C, H, W)`` in [0, 1]. ``"pt"`` keeps that layout (float32); ``"np"`` gives
        ``(B, H, W, C)`` float32 like diffusers; ``"pil"`` gives a list of ``PIL.Image`` (mode ``L`` for one channel)."""
        images = images.detach().float().clamp(0, 1)
        if output_type == "pt":
            result = images
        else:
            array = images.cpu().permute(0, 2, 3, 1).numpy()
            result = array if output_type == "np" else self.numpy_to_pil(array)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (result,)
        return ImagePipelineOutput(images=result)


class DDIMClassConditionalPipeline(ClassConditionalZooPipeline):
    """The class-conditional DDIM zoo pipelines (``dit-digits``, ``unet-photos``): one ``__call__`` for both.

    A subclass names its denoiser component (``denoiser_name``; its ``__init__`` registers it under that name, as
    diffusers pipelines do) and says how that model is called (:meth:`predict_velocity`).
    """

    denoiser_name: ClassVar[str] = ""

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
            getattr(self, self.denoiser_name),
            self.predict_velocity,
            labels,
            guidance_scale,
            num_inference_steps,
            generator,
            eta,
        )
        return self.to_output(samples / 2 + 0.5, output_type, return_dict)

    def predict_velocity(self, model_input: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def from_weights_folder(
        cls, folder, model_cls: type[torch.nn.Module], default_guidance_scale: float, device="cpu", dtype=torch.float32
    ):
        """The pipeline from a weights folder written by :mod:`diffaccel.zoo.train` (``config.json`` and
        ``model.safetensors``)."""
        from .weights_io import load_state_into, read_json

        config = read_json(folder / "config.json")
        model = model_cls.from_config(config["components"][cls.denoiser_name]["config"])
        load_state_into(folder / "model.safetensors", {cls.denoiser_name: model})
        scheduler = DDIMScheduler.from_config(config["scheduler"]["config"])
        return cls(
            place(model, device, dtype),
            scheduler,
            class_names=config["pipeline"]["class_names"],
            default_guidance_scale=config["pipeline"].get("default_guidance_scale", default_guidance_scale),
        )


class DDPMVelocityTraining:
    """Training recipe shared by the DDIM zoo models: DDPM with v-prediction (Salimans & Ho 2022) and per-sample
    label dropout to the null class (for classifier-free guidance), used by :mod:`diffaccel.zoo.train`.

    Subclasses set the class attributes and give the training data (:meth:`training_data`, images in [0, 1]) and
    the model call (:meth:`predict`).
    """

    denoiser_name: ClassVar[str] = ""
    class_names: ClassVar[Sequence[str]] = ()
    scheduler_config: ClassVar[dict] = {}
    default_guidance_scale: ClassVar[float] = 1.0
    seed = 0
    label_dropout = 0.1

    def __init__(self):
        self.noise_scheduler = DDPMScheduler(
            **{k: v for k, v in self.scheduler_config.items() if k != "timestep_spacing"}
        )
        images, labels = self.training_data()
        self.images = images * 2 - 1
        self.labels = labels

    def training_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def predict(
        self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError

    def denoise(
        self, components: dict[str, torch.nn.Module], noisy: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """The model output for the loss; models with more than one trained component (for example a class
        embedder next to the denoiser) override this instead of :meth:`predict`."""
        return self.predict(components[self.denoiser_name], noisy, timesteps, labels)

    def loss(self, components: dict[str, torch.nn.Module], generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(0, len(self.labels), (self.batch_size,), generator=generator)
        clean, labels = self.images[index], self.labels[index]
        drop = torch.rand(self.batch_size, generator=generator) < self.label_dropout
        labels = torch.where(drop, torch.full_like(labels, len(self.class_names)), labels)
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (self.batch_size,), generator=generator
        )
        noisy = self.noise_scheduler.add_noise(clean, noise, timesteps)
        prediction = self.denoise(components, noisy, timesteps, labels)
        return torch.nn.functional.mse_loss(prediction, self.noise_scheduler.get_velocity(clean, noise, timesteps))

    def config(self, components: dict[str, torch.nn.Module]) -> dict:
        from .weights_io import model_config

        return {
            "components": {self.denoiser_name: model_config(components[self.denoiser_name])},
            "scheduler": {"class": "DDIMScheduler", "config": self.scheduler_config},
            "pipeline": self.pipeline_config(),
        }

    def pipeline_config(self) -> dict:
        return {"class_names": list(self.class_names), "default_guidance_scale": self.default_guidance_scale}
