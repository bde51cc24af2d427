"""The reference zoo: tiny models of real diffusers classes, trained here on data shipped inside installed wheels.

``names()`` lists them and ``load(name, device="cpu", dtype=torch.float32)`` returns a ready
``diffusers.DiffusionPipeline`` whose call mirrors diffusers (``num_inference_steps``, ``guidance_scale``,
``generator``, ``class_labels``, ``output_type``; returns an output with ``.images``). Called without
``class_labels`` a zoo pipeline draws one sample per class. Weights are committed as safetensors in
``diffaccel/zoo/weights/<name>/`` with a manifest (training command, seed, time, final loss, sha256); they are
produced by ``python -m diffaccel.zoo.train <name>`` and never trained or downloaded at load time.
"""

from __future__ import annotations

from functools import partial

import torch

from .registry import ZooEntry, entry, load, names, register_zoo_model, unregister_zoo_model

DEFAULT_MODEL = "flux-photos"


def _load_builtin(module_name: str, name: str, device="cpu", dtype=torch.float32):
    import importlib

    from .weights_io import weights_dir

    folder = weights_dir(name)
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"zoo weights for {name!r} are missing at {folder}; they ship with the package "
            f"(or train them with `python -m diffaccel.zoo.train {name}`)"
        )
    return importlib.import_module(module_name).load(folder, device=device, dtype=dtype)


register_zoo_model(
    "flux-photos",
    partial(_load_builtin, "diffaccel.zoo.flux_photos", "flux-photos"),
    "FluxTransformer2DModel (2 double + 4 single blocks), flow matching on 32x32 crops of 8 shipped photos; "
    "two-call cache_context CFG",
)
register_zoo_model(
    "dit-digits",
    partial(_load_builtin, "diffaccel.zoo.dit_digits", "dit-digits"),
    "class-conditional DiTTransformer2DModel on scikit-learn 8x8 digits, DDIM; doubled-batch CFG; digit classifier",
)
register_zoo_model(
    "unet-photos",
    partial(_load_builtin, "diffaccel.zoo.unet_photos", "unet-photos"),
    "class-conditional UNet2DModel, DDIM, on 32x32 crops of 8 shipped photos; doubled-batch CFG",
)
register_zoo_model(
    "flux-photos-b",
    partial(_load_builtin, "diffaccel.zoo.flux_photos", "flux-photos-b"),
    "validation only: flux-photos' recipe retrained with seed 1 for 2400 steps; nothing is tuned on it",
)
register_zoo_model(
    "pixart-photos",
    partial(_load_builtin, "diffaccel.zoo.pixart_photos", "pixart-photos"),
    "validation only: PixArtTransformer2DModel (4 blocks, d=128), DDIM v-prediction, on the flux-photos crops; "
    "doubled-batch CFG; nothing is tuned on it",
)
register_zoo_model(
    "llada-addition",
    "diffaccel.dllm.zoo:load_llada_addition",
    "LLaDA-architecture masked-diffusion LM (4 layers, d=96) on 4-digit addition; LLaDAPipeline with a digit tokenizer",
    kind="dllm",
)
register_zoo_model(
    "dream-addition",
    "diffaccel.dllm.zoo:load_dream_addition",
    "Dream-architecture twin of llada-addition (4 layers, d=96, 4 query / 2 key-value heads, shifted logits) on "
    "4-digit addition; DreamPipeline with a digit tokenizer",
    kind="dllm",
)
register_zoo_model(
    "llada-recall",
    "diffaccel.dllm.zoo:load_llada_recall",
    "LLaDA-architecture masked-diffusion LM (2 layers, d=64) on a fixed-distance copy (passage recall with the cue "
    "at position 0): 515-token prompts, 32-token answers; LLaDAPipeline with a symbol tokenizer",
    kind="dllm",
)
register_zoo_model(
    "wan-clips",
    partial(_load_builtin, "diffaccel.zoo.wan_clips", "wan-clips"),
    "WanTransformer3DModel (4 blocks, d=96) on 8-frame 20x20 clips panning across 8 shipped photos, flow matching; "
    "two-call cache_context CFG; output .frames",
    kind="video",
)

register_zoo_model(
    "dp-reach",
    partial(_load_builtin, "diffaccel.policy.zoo", "dp-reach"),
    "transformer diffusion policy (TransformerForDiffusion layout, 4 layers, n_emb 128, causal), DDPM 100 steps, "
    "on ObstacleReach-2D (one disc, bimodal expert); returns the policy (predict_action)",
    kind="policy",
)
register_zoo_model(
    "dp-reach-two",
    partial(_load_builtin, "diffaccel.policy.zoo", "dp-reach-two"),
    "the same policy on the harder ObstacleReach-2D variant with two discs (four expert modes)",
    kind="policy",
)
register_zoo_model(
    "dp-reach-full-attn",
    partial(_load_builtin, "diffaccel.policy.zoo", "dp-reach-full-attn"),
    "dp-reach with full attention between action tokens (the reference's causal_attn=False)",
    kind="policy",
)
register_zoo_model(
    "dp-reach-two-full-attn",
    partial(_load_builtin, "diffaccel.policy.zoo", "dp-reach-two-full-attn"),
    "dp-reach-two with full attention between action tokens (the reference's causal_attn=False)",
    kind="policy",
)

__all__ = ["DEFAULT_MODEL", "ZooEntry", "entry", "load", "names", "register_zoo_model", "unregister_zoo_model"]
