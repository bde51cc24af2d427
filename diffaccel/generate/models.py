"""The model table of the generation scripts: hub checkpoint, pipeline class, defaults, and the `--tiny` stand-in.

Each :class:`ModelSpec` says how to load the real checkpoint on a GPU (the recipe of the model's card or of the
diffusers pipeline's own example: dtypes per component, scheduler, VAE tiling), which call arguments and defaults
the pipeline takes (checked against the installed diffusers' ``__call__`` signatures), and what runs under
``--tiny`` on a CPU without the hub: the trained zoo model of that transformer class where one exists
(``flux-photos`` for FLUX, ``wan-clips`` for Wan), otherwise a tiny randomly initialised pipeline of the same
diffusers class built from local components (:mod:`diffaccel.testing.tiny_pipelines`,
:mod:`diffaccel.testing.tiny_pipelines_more`).
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..zoo.data import PHOTO_CLASS_NAMES

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Defaults:
    """Generation settings of one model; ``None`` means the setting does not apply (images have no frames)."""

    prompt: str
    steps: int
    guidance: float | None  # None: the pipeline's own default
    height: int | None = None
    width: int | None = None
    frames: int | None = None
    fps: int | None = None
    negative_prompt: str | None = None
    max_sequence_length: int | None = None  # None: the pipeline's own default


@dataclass(frozen=True)
class TinySpec:
    """What ``--tiny`` runs. ``builder`` (``"module:function"``) makes a tiny random pipeline of the real class;
    ``zoo`` names a trained zoo model of the same transformer class and of the model's kind (its pipeline returns
    ``.images`` or ``.frames`` like the real one), preferred by ``--tiny`` when registered (``--tiny-random`` still
    picks the builder). ``zoo_defaults`` are its settings: the prompt only chooses a class, ``guidance=None`` means
    the guidance stored with its weights, and size and frame count are fixed by the weights (left ``None``)."""

    builder: str
    defaults: Defaults
    zoo: str | None = None
    zoo_defaults: Defaults | None = None
    notes: str = ""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    kind: str  # "image" | "video"
    pipeline_class: str
    repo_id: str
    defaults: Defaults
    tiny: TinySpec
    torch_dtype: torch.dtype = torch.bfloat16
    #: the pipeline argument that ``--guidance`` sets (Qwen-Image's classifier-free guidance is ``true_cfg_scale``)
    guidance_arg: str = "guidance_scale"
    #: False for guidance-distilled models whose pipelines ignore a negative prompt unless asked for true CFG
    negative_prompt_supported: bool = True
    #: the pipeline argument that receives ``--fps`` (LTX conditions its rotary positions on the frame rate)
    fps_arg: str | None = None
    vae_tiling: bool = False
    #: custom loading beyond ``PipelineClass.from_pretrained(repo, dtype=...)``
    load: Callable[[ModelSpec, str, torch.dtype], Any] | None = None
    notes: str = ""
    extra_call: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- custom loaders
def _load_wan(spec: ModelSpec, repo_id: str, dtype: torch.dtype):
    """Wan 2.1 as in the diffusers example: VAE in float32, UniPC with flow_shift 3.0 (the value for 480p;
    5.0 for 720p)."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline

    vae = AutoencoderKLWan.from_pretrained(repo_id, subfolder="vae", dtype=torch.float32)
    pipe = WanPipeline.from_pretrained(repo_id, vae=vae, dtype=dtype)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=3.0)
    return pipe


def _load_hunyuan(spec: ModelSpec, repo_id: str, dtype: torch.dtype):
    """HunyuanVideo as in the diffusers example: the transformer in ``dtype`` (bf16), the rest in float16
    (float32 throughout when ``dtype`` is float32)."""
    from diffusers import HunyuanVideoPipeline, HunyuanVideoTransformer3DModel

    transformer = HunyuanVideoTransformer3DModel.from_pretrained(repo_id, subfolder="transformer", dtype=dtype)
    others = torch.float32 if dtype == torch.float32 else torch.float16
    return HunyuanVideoPipeline.from_pretrained(repo_id, transformer=transformer, dtype=others)


_IMAGE_PROMPT = "A cat holding a sign that says hello world"
_VIDEO_PROMPT = "A cat walks on the grass, realistic"
_TINY_PROMPT = "a photo of a cat on a red house"  # words the tiny word-level tokenizers know
_TINY_IMAGE = dict(prompt=_TINY_PROMPT, steps=6, max_sequence_length=16)
_TINY_VIDEO = dict(prompt=_TINY_PROMPT, steps=6, max_sequence_length=16, fps=8)
_PHOTO_CLASSES = ", ".join(PHOTO_CLASS_NAMES)  # the classes of the photo zoo models (flux-photos, wan-clips)
_WORD_TOKENIZER_NOTE = (
    "tokenizers are word-level ones built in memory (the real vocabularies are hub files), so prompts and "
    "prompt templates tokenize differently from the real model"
)

MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec(
            name="flux",
            title="FLUX.1-dev text-to-image",
            kind="image",
            pipeline_class="FluxPipeline",
            repo_id="black-forest-labs/FLUX.1-dev",
            defaults=Defaults(_IMAGE_PROMPT, steps=50, guidance=3.5, height=1024, width=1024),
            negative_prompt_supported=False,
            notes="FLUX.1-dev is guidance-distilled: --guidance is the embedded guidance (one transformer call per step).",
            tiny=TinySpec(
                builder="diffaccel.testing.tiny_pipelines:tiny_flux_pipeline",
                defaults=Defaults(**_TINY_IMAGE, guidance=3.5, height=16, width=16),
                zoo="flux-photos",
                zoo_defaults=Defaults("a photo of chelsea", steps=6, guidance=None),  # None: the zoo pipeline's own
                notes=(
                    "--tiny runs the trained zoo model flux-photos (a FluxTransformer2DModel on 32x32 photo crops). "
                    f"It is class-conditional: the first photo-class name found in the prompt ({_PHOTO_CLASSES}) "
                    "is the class; a prompt naming none draws one image per class (<stem>_<i>.png). It has no text "
                    "encoder and a fixed 32x32 size, so --negative-prompt, --height and --width do not apply. "
                    "--tiny-random runs a tiny random FluxPipeline instead (CLIP + T5)."
                ),
            ),
        ),
        ModelSpec(
            name="sd3",
            title="Stable Diffusion 3.5 Medium text-to-image",
            kind="image",
            pipeline_class="StableDiffusion3Pipeline",
            repo_id="stabilityai/stable-diffusion-3.5-medium",
            defaults=Defaults(_IMAGE_PROMPT, steps=40, guidance=4.5, height=1024, width=1024),
            tiny=TinySpec(
                builder="diffaccel.testing.tiny_pipelines_more:tiny_sd3_pipeline",
                defaults=Defaults(**_TINY_IMAGE, guidance=4.5, height=32, width=32),
                notes=f"--tiny: a tiny random StableDiffusion3Pipeline (two CLIP + T5); {_WORD_TOKENIZER_NOTE}.",
            ),
        ),
        ModelSpec(
            name="qwen-image",
            title="Qwen-Image text-to-image",
            kind="image",
            pipeline_class="QwenImagePipeline",
            repo_id="Qwen/Qwen-Image",
            defaults=Defaults(_IMAGE_PROMPT, steps=50, guidance=4.0, height=1328, width=1328, negative_prompt=" "),
            guidance_arg="true_cfg_scale",
            notes=(
                "--guidance sets true_cfg_scale; the pipeline applies it only with a negative prompt (default ' ', "
                "as in the model card)."
            ),
            tiny=TinySpec(
                builder="diffaccel.testing.tiny_pipelines_more:tiny_qwen_image_pipeline",
                defaults=Defaults(**_TINY_IMAGE, guidance=4.0, height=32, width=32, negative_prompt=" "),
                notes=(
                    "--tiny: a tiny random QwenImagePipeline with a tiny Qwen2_5_VLForConditionalGeneration "
                    f"text encoder built from a local config; {_WORD_TOKENIZER_NOTE}."
                ),
            ),
        ),
        ModelSpec(
            name="wan",
            title="Wan 2.1 T2V 1.3B text-to-video",
            kind="video",
            pipeline_class="WanPipeline",
            repo_id="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
            defaults=Defaults(_VIDEO_PROMPT, steps=50, guidance=5.0, height=480, width=832, frames=81, fps=16),
            load=_load_wan,
            notes="Loaded as in the diffusers example: VAE in float32, UniPC scheduler with flow_shift=3.0 (480p).",
            tiny=TinySpec(
                builder="diffaccel.testing.tiny_pipelines:tiny_wan_pipeline",
                defaults=Defaults(**_TINY_VIDEO, guidance=5.0, height=16, width=16, frames=5),
                zoo="wan-clips",
                # 20 steps: 0.5 s on one CPU core, and room for the Wan preset (interval 5) to forecast
                zoo_defaults=Defaults("a pan across the rocket photo", steps=20, guidance=None, fps=8),
                notes=(
                    "--tiny runs the trained zoo model wan-clips (a WanTransformer3DModel on 8-frame 20x20 clips "
                    "panning across a photo, two-call guidance under cache_context as in WanPipeline; default 20 "
                    "steps, 8 fps). It is class-conditional: the first photo-class name found in the prompt "
                    f"({_PHOTO_CLASSES}) is the class; a prompt naming none draws one clip per class "
                    "(<stem>_<i>.mp4). The pan direction is the model's choice. It has no VAE or text encoder, and "
                    "a fixed size and clip length, so --height, --width, --frames, --negative-prompt and "
                    "--max-sequence-length do not apply. --tiny-random runs a tiny random WanPipeline (UMT5) "
                    f"instead; its {_WORD_TOKENIZER_NOTE}."
                ),
            ),
        ),
        ModelSpec(
            name="hunyuan-video",
            title="HunyuanVideo text-to-video",
            kind="video",
            pipeline_class="HunyuanVideoPipeline",
            repo_id="hunyuanvideo-community/HunyuanVideo",
            defaults=Defaults(_VIDEO_PROMPT, steps=30, guidance=6.0, height=320, width=512, frames=61, fps=15),
            load=_load_hunyuan,
            vae_tiling=True,
            negative_prompt_supported=False,
            notes=(
                "Guidance-distilled: --guidance is the embedded guidance. Loaded as in the diffusers example: "
                "transformer in --dtype (bf16), other components in float16, VAE tiling on. The 13B transformer "
                "needs a large GPU; add --cpu-offload otherwise."
            ),
            tiny=TinySpec(
                builder="diffaccel.testing.tiny_pipelines_more:tiny_hunyuan_video_pipeline",
                defaults=Defaults(**_TINY_VIDEO, guidance=6.0, height=16, width=16, frames=5),
                notes=(
                    "--tiny: a tiny random HunyuanVideoPipeline with a tiny LlamaModel + CLIPTextModel built "
                    f"from local configs; {_WORD_TOKENIZER_NOTE} (the pipeline crops the first 95 template "
                    "tokens by position)."
                ),
            ),
        ),
        ModelSpec(
            name="cogvideox",
            title="CogVideoX-2b text-to-video",
            kind="video",
            pipeline_class="CogVideoXPipeline",
            repo_id="THUDM/CogVideoX-2b",
            defaults=Defaults(_VIDEO_PROMPT, steps=50, guidance=6.0, height=480, width=720, frames=49, fps=8),
            torch_dtype=torch.float16,
            vae_tiling=True,
            notes="CogVideoX-2b runs in float16 (the precision its model card recommends); VAE tiling on.",
            tiny=TinySpec(
                builder="diffaccel.testing.tiny_pipelines_more:tiny_cogvideox_pipeline",
                defaults=Defaults(**_TINY_VIDEO, guidance=6.0, height=16, width=16, frames=9),
                notes=f"--tiny: a tiny random CogVideoXPipeline (T5); {_WORD_TOKENIZER_NOTE}.",
            ),
        ),
        ModelSpec(
            name="ltx-video",
            title="LTX-Video text-to-video",
            kind="video",
            pipeline_class="LTXPipeline",
            repo_id="Lightricks/LTX-Video",
            defaults=Defaults(
                _VIDEO_PROMPT,
                steps=50,
                guidance=3.0,
                height=480,
                width=704,
                frames=161,
                fps=24,
                negative_prompt="worst quality, inconsistent motion, blurry, jittery, distorted",
            ),
            fps_arg="frame_rate",
            tiny=TinySpec(
                builder="diffaccel.testing.tiny_pipelines_more:tiny_ltx_pipeline",
                defaults=Defaults(**_TINY_VIDEO, guidance=3.0, height=32, width=32, frames=9),
                notes=f"--tiny: a tiny random LTXPipeline (T5); {_WORD_TOKENIZER_NOTE}.",
            ),
        ),
    )
}


def get_model(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; the generation scripts know: {', '.join(MODELS)}")
    return MODELS[name]


# ------------------------------------------------------------------------------------------------- loading
def load_pretrained(spec: ModelSpec, repo_id: str, dtype: torch.dtype):
    """The real pipeline from the hub (or a local folder / the Hugging Face cache)."""
    if spec.load is not None:
        return spec.load(spec, repo_id, dtype)
    import diffusers

    return getattr(diffusers, spec.pipeline_class).from_pretrained(repo_id, dtype=dtype)


def uses_zoo(spec: ModelSpec, force_random: bool) -> bool:
    """Whether ``--tiny`` runs the zoo model: one is named for this model, registered, and not overridden."""
    if force_random or spec.tiny.zoo is None:
        return False
    from .. import zoo

    return spec.tiny.zoo in zoo.names()


def load_tiny(spec: ModelSpec, use_zoo: bool):
    """The ``--tiny`` pipeline (float32, CPU). A zoo model whose weights are missing is an error that says how
    to get them or how to run the random stand-in, never a silent switch to a different model."""
    if use_zoo:
        from .. import zoo

        try:
            return zoo.load(spec.tiny.zoo)
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"{error}. Run the tiny random {spec.pipeline_class} instead with --tiny-random."
            ) from error
    module_name, _, function = spec.tiny.builder.partition(":")
    return getattr(importlib.import_module(module_name), function)()


def zoo_class_labels(pipe, prompt: str) -> list[int] | None:
    """The class the prompt names (first class name found as a whole word, case-insensitive), or ``None``
    (one sample per class: an image or a clip) when it names none."""
    words = re.findall(r"[a-z0-9]+", prompt.lower())
    positions = {name: words.index(name.lower()) for name in pipe.class_names if name.lower() in words}
    if not positions:
        logger.warning(
            "the prompt names none of the classes of this zoo model (%s): drawing one sample per class",
            ", ".join(pipe.class_names),
        )
        return None
    first = min(positions, key=positions.get)
    return [pipe.class_names.index(first)]
