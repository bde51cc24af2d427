"""Behaviour shared by the class-conditional zoo pipelines and their training recipes.

One pipeline base, :class:`ClassConditionalZooPipeline`: component registration, loading from a weights folder,
class-label handling, diffusers-style output conversion, and the two sampling loops the zoo uses, each
parametrised by one small per-model call:

- DDIM with doubled-batch classifier-free guidance (``dit-digits``, ``unet-photos``; the ``DiTPipeline`` and Stable
  Diffusion style), the model called by :meth:`~DDIMClassConditionalPipeline.predict_velocity`;
- flow matching with two-call guidance under ``cache_context("cond")`` / ``cache_context("uncond")``
  (``flux-photos``, ``wan-clips``; the ``FluxPipeline`` and ``WanPipeline`` style), the model called by
  :meth:`~ClassConditionalZooPipeline.call_transformer`.

One training base, :class:`ZooTraining` (label dropout for guidance, the saved ``config.json``), with the DDPM
v-prediction loss (:class:`DDPMVelocityTraining`) and the rectified-flow loss (:class:`RectifiedFlowTraining`).

The zoo pipelines are ordinary :class:`diffusers.DiffusionPipeline` subclasses so that everything that works on
a hub pipeline (``diffaccel.wrap``, ``.to()``, ``set_progress_bar_config``, diffusers hooks) works on them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from diffusers import DDPMScheduler, DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

OUTPUT_TYPES = ("pil", "np", "pt")

# The scheduler of the DDIM zoo models: 1,000 training steps with the cosine betas of Nichol & Dhariwal (2021),
# v-prediction (Salimans & Ho 2022), "trailing" timestep spacing for sampling (Lin et al. 2024, "Common Diffusion
# Noise Schedules and Sample Steps are Flawed").
COSINE_V_PREDICTION_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_schedule="squaredcos_cap_v2",
    prediction_type="v_prediction",
    clip_sample=True,
    timestep_spacing="trailing",
)


def place(module: torch.nn.Module, device, dtype: torch.dtype) -> torch.nn.Module:
    """Move a freshly loaded component to ``device`` and cast it only when ``dtype`` differs (diffusers warns on
    every dtype cast of a model), returned in eval mode."""
    module = module.to(device=device)
    if next(module.parameters()).dtype != dtype:
        module = module.to(dtype=dtype)
    return module.eval()


def guided(cond: torch.Tensor, uncond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance ``uncond + s * (cond - uncond)`` (Ho & Salimans 2022, eq. 6, with ``s = 1 + w``)."""
    return uncond + guidance_scale * (cond - uncond)


class ClassConditionalZooPipeline(DiffusionPipeline):
    """Base of the zoo pipelines: a fixed list of class names, loading, the conversions every ``__call__`` needs and
    the sampling loops.

    A subclass keeps an explicit ``__init__`` naming its components (no default) and settings (with a default),
    because diffusers reads that signature to tell the two apart (``pipe.components``, ``from_pretrained``), and
    hands them to this ``__init__``. It names the classes its weights folder holds (:attr:`component_classes`,
    :attr:`scheduler_class`). The null (unconditional) class used for classifier-free guidance is the id
    ``len(class_names)``. A guidance scale of at most 1 skips the unconditional branch entirely.
    """

    # trained component name (pipeline argument and safetensors key prefix) -> its class, in loading order
    component_classes: ClassVar[dict[str, type[torch.nn.Module]]] = {}
    scheduler_class: ClassVar[type] = type(None)

    def __init__(self, components: dict[str, Any], class_names: Sequence[str], **settings):
        super().__init__()
        self.register_modules(**components)
        self.register_to_config(class_names=list(class_names), **settings)

    @classmethod
    def from_weights_folder(cls, folder, device="cpu", dtype=torch.float32):
        """The pipeline from a weights folder written by :mod:`diffaccel.zoo.train` (``config.json`` and
        ``model.safetensors``); settings missing from ``config.json`` take the pipeline's defaults."""
        from .weights_io import load_state_into, read_json

        config = read_json(folder / "config.json")
        components = {
            name: component_cls.from_config(config["components"][name]["config"])
            for name, component_cls in cls.component_classes.items()
        }
        load_state_into(folder / "model.safetensors", components)
        return cls(
            scheduler=cls.scheduler_class.from_config(config["scheduler"]["config"]),
            **{name: place(module, device, dtype) for name, module in components.items()},
            **config["pipeline"],
        )

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
                model_output = guided(*model_output.chunk(2), guidance_scale)
            latents = self.scheduler.step(model_output, t, latents, eta=eta, generator=generator).prev_sample
        return latents

    def sample_flow_with_two_call_guidance(
        self, latents: torch.Tensor, labels: torch.Tensor, guidance_scale: float
    ) -> torch.Tensor:
        """Integrate ``latents`` over ``self.scheduler.timesteps`` (a flow-matching Euler scheduler whose
        ``set_timesteps`` the caller has run), returning the final latents.

        Classifier-free guidance runs as TWO transformer calls per step, the first under ``cache_context("cond")``,
        the second under ``cache_context("uncond")``, as diffusers' ``FluxPipeline`` and ``WanPipeline`` do; a
        scale of at most 1 makes only the conditional call. Each call is :meth:`call_transformer` with the
        keywords :meth:`transformer_condition` gives for the labels (the null class for the unconditional call)
        and the step keywords ``WanPipeline`` passes to ``cache_context`` (``step_index``, ``sigma``,
        ``num_inference_steps``), which a model may pass on or not. Why it lives here: flux-photos and wan-clips
        sample the same way and differ only in how their transformer is called.
        """
        do_guidance = guidance_scale > 1.0
        condition = self.transformer_condition(labels)
        if do_guidance:
            negative_condition = self.transformer_condition(torch.full_like(labels, self.null_class_id))
        self.scheduler.set_begin_index(0)
        timesteps = self.scheduler.timesteps
        for i, t in enumerate(self.progress_bar(timesteps)):
            step = {"step_index": i, "sigma": float(self.scheduler.sigmas[i]), "num_inference_steps": len(timesteps)}
            velocity = self.call_transformer("cond", step, latents, t, condition)
            if do_guidance:
                negative_velocity = self.call_transformer("uncond", step, latents, t, negative_condition)
                velocity = guided(velocity, negative_velocity, guidance_scale)
            latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
        return latents

    def transformer_condition(self, class_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """The transformer's conditioning keywords for ``class_ids`` (flow-matching models)."""
        raise NotImplementedError

    def call_transformer(
        self, context: str, step: dict, latents: torch.Tensor, t: torch.Tensor, condition: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """One guidance branch of a flow-matching model: its transformer called under ``cache_context(context)``
        as its diffusers pipeline calls it, returning the predicted velocity."""
        raise NotImplementedError

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


class ZooTraining:
    """What every zoo training recipe shares (see :mod:`diffaccel.zoo.train` for the recipe protocol): training
    samples with class labels, per-sample label dropout to the null class (so that one model learns the
    unconditional branch of classifier-free guidance), and the ``config.json`` the pipeline loads from.

    Subclasses set the class attributes, give the data (:meth:`training_data`: samples in the model's space
    [-1, 1] and class ids) and the model call (:meth:`predict`).
    """

    class_names: ClassVar[Sequence[str]] = ()
    scheduler_class: ClassVar[str] = ""
    scheduler_config: ClassVar[dict] = {}
    default_guidance_scale: ClassVar[float] = 1.0
    # pipeline settings saved between ``class_names`` and ``default_guidance_scale`` in ``config.json``
    pipeline_settings: ClassVar[dict] = {}
    seed = 0
    label_dropout = 0.1

    def __init__(self):
        self.samples, self.labels = self.training_data()

    def training_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def predict(
        self, components: dict[str, torch.nn.Module], noisy: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError

    def draw_batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(clean samples, labels with dropout to the null class, noise)`` of one training batch."""
        index = torch.randint(0, len(self.labels), (self.batch_size,), generator=generator)
        clean, labels = self.samples[index], self.labels[index]
        drop = torch.rand(self.batch_size, generator=generator) < self.label_dropout
        labels = torch.where(drop, torch.full_like(labels, len(self.class_names)), labels)
        return clean, labels, torch.randn(clean.shape, generator=generator)

    def config(self, components: dict[str, torch.nn.Module]) -> dict:
        from .weights_io import model_config

        return {
            "components": {name: model_config(module) for name, module in components.items()},
            "scheduler": {"class": self.scheduler_class, "config": self.scheduler_config},
            "pipeline": self.pipeline_config(),
        }

    def pipeline_config(self) -> dict:
        return {
            "class_names": list(self.class_names),
            **self.pipeline_settings,
            "default_guidance_scale": self.default_guidance_scale,
        }


class DDPMVelocityTraining(ZooTraining):
    """Training recipe shared by the DDIM zoo models: DDPM with v-prediction (Salimans & Ho 2022)."""

    scheduler_class = "DDIMScheduler"

    def __init__(self):
        self.noise_scheduler = DDPMScheduler(
            **{k: v for k, v in self.scheduler_config.items() if k != "timestep_spacing"}
        )
        super().__init__()

    def loss(self, components: dict[str, torch.nn.Module], generator: torch.Generator) -> torch.Tensor:
        clean, labels, noise = self.draw_batch(generator)
        timesteps = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (self.batch_size,), generator=generator
        )
        noisy = self.noise_scheduler.add_noise(clean, noise, timesteps)
        prediction = self.predict(components, noisy, timesteps, labels)
        return torch.nn.functional.mse_loss(prediction, self.noise_scheduler.get_velocity(clean, noise, timesteps))


class RectifiedFlowTraining(ZooTraining):
    """Training recipe shared by the flow-matching zoo models (rectified flow, as Flux and Wan train):
    ``x_t = (1 - t) x_0 + t * noise`` with target velocity ``noise - x_0``; a subclass draws ``t``
    (:meth:`noise_levels`)."""

    scheduler_class = "FlowMatchEulerDiscreteScheduler"

    def noise_levels(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, components: dict[str, torch.nn.Module], generator: torch.Generator) -> torch.Tensor:
        clean, labels, noise = self.draw_batch(generator)
        t = self.noise_levels(generator)
        t_per_sample = t.view(-1, *[1] * (clean.dim() - 1))
        noisy = (1 - t_per_sample) * clean + t_per_sample * noise
        velocity = self.predict(components, noisy, t, labels)
        return torch.nn.functional.mse_loss(velocity, noise - clean)
