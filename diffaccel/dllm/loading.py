"""Load real LLaDA / Dream checkpoints from a local directory of safetensors (GPU path; parameter names of the official checkpoints).

Usage on a GPU machine (weights downloaded beforehand, e.g. ``huggingface-cli download
GSAI-ML/LLaDA-8B-Instruct --local-dir ./LLaDA-8B-Instruct``; diffaccel itself never downloads)::

    from diffaccel.dllm import load_llada, LLaDAPipeline
    from transformers import AutoTokenizer
    model = load_llada("./LLaDA-8B-Instruct", dtype=torch.bfloat16, device="cuda")
    tokenizer = AutoTokenizer.from_pretrained("./LLaDA-8B-Instruct", padding_side="left")
    pipe = LLaDAPipeline(model, tokenizer)

    model = load_dream("./Dream-v0-Instruct-7B", dtype=torch.bfloat16, device="cuda")

The same loaders read diffaccel's zoo folders, which use the hub layout (:mod:`diffaccel.dllm.hub_config`).
The directory must hold ``config.json`` and either ``model.safetensors`` or a sharded
``model.safetensors.index.json`` with its shards. Parameters are created on the ``meta`` device and
assigned shard by shard, so peak memory is one copy of the weights. Every checkpoint tensor must
match a parameter by name and shape and every parameter must be filled, otherwise loading fails
with the offending names. Only safetensors are read (never pickle). This path is written for real
checkpoints but could not be run in this repository's CPU-only, offline environment; the tests
exercise it on tiny checkpoints written in both layouts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors import safe_open

from ..zoo.weights_io import read_json
from .config import DreamConfig, LLaDAConfig
from .dream import DreamModel
from .hub_config import read_model_config
from .llada import LLaDAModelLM

logger = logging.getLogger(__name__)

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


def checkpoint_shards(directory: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint directory, from its index if sharded."""
    directory = Path(directory)
    index = directory / INDEX_FILE
    if index.is_file():
        weight_map = read_json(index)["weight_map"]
        shards = sorted({directory / name for name in weight_map.values()})
        missing = [str(s) for s in shards if not s.is_file()]
        if missing:
            raise FileNotFoundError(f"shards listed in {index} are missing: {missing}")
        return shards
    single = directory / SINGLE_FILE
    if single.is_file():
        return [single]
    raise FileNotFoundError(f"{directory} has neither {SINGLE_FILE} nor {INDEX_FILE} (only safetensors are loaded)")


def aligned(tensor: torch.Tensor, alignment: int = 64) -> torch.Tensor:
    """``tensor``, copied if it is a CPU tensor whose data does not start on an ``alignment``-byte boundary.

    safetensors hands tensors out at any byte offset of its read buffer, and CPU matrix kernels take
    alignment-dependent code paths: an unaligned weight gives results that differ in the last bits from the same
    weight at another address (measured: 3.6e-15 on float64 logits), so a loaded model would not be bit-identical
    to the one that was saved. A copy lands on the allocator's 64-byte alignment."""
    if tensor.device.type == "cpu" and tensor.data_ptr() % alignment:
        return tensor.clone()
    return tensor


def load_state_into(
    model: torch.nn.Module,
    shards: list[Path],
    *,
    dtype: torch.dtype | None,
    device: str | torch.device,
    optional: frozenset[str] = frozenset(),
) -> torch.nn.Module:
    """Assign every tensor of ``shards`` to ``model`` (which may live on ``meta``), strictly.

    Names in ``optional`` may be absent from the checkpoint (tied weights stored once)."""
    expected = dict(model.state_dict())
    seen: set[str] = set()
    unexpected: list[str] = []
    for shard in shards:
        logger.info("loading %s", shard)
        with safe_open(str(shard), framework="pt", device=str(device)) as handle:
            tensors = {}
            for name in handle.keys():
                if name not in expected:
                    if name.endswith("rotary_emb.inv_freq"):
                        continue  # non-persistent buffer some exports keep; RoPE is recomputed here
                    unexpected.append(name)
                    continue
                tensor = handle.get_tensor(name)
                if tuple(tensor.shape) != tuple(expected[name].shape):
                    raise ValueError(
                        f"{shard.name}: {name} has shape {tuple(tensor.shape)}, "
                        f"model expects {tuple(expected[name].shape)}"
                    )
                if dtype is not None and tensor.is_floating_point():
                    tensor = tensor.to(dtype)
                tensors[name] = aligned(tensor)
            model.load_state_dict(tensors, strict=False, assign=True)
            seen.update(tensors)
    missing = sorted(set(expected) - seen - optional)
    if unexpected or missing:
        raise ValueError(
            f"checkpoint does not match the model: missing {missing[:10]}{'...' if len(missing) > 10 else ''}"
            f", unexpected {unexpected[:10]}{'...' if len(unexpected) > 10 else ''}"
        )
    return model.eval()


def _build_on_meta(model_cls, config):
    with torch.device("meta"):
        return model_cls(config)


def load_llada(
    directory: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    config: LLaDAConfig | None = None,
) -> LLaDAModelLM:
    """A :class:`LLaDAModelLM` with the weights of a LLaDA checkpoint directory (no remote code)."""
    directory = Path(directory)
    config = config or read_model_config(directory, family="llada")
    model = _build_on_meta(LLaDAModelLM, config)
    return load_state_into(model, checkpoint_shards(directory), dtype=dtype, device=device)


def load_dream(
    directory: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    config: DreamConfig | None = None,
) -> DreamModel:
    """A :class:`DreamModel` with the weights of a Dream checkpoint directory (no remote code).

    Tied embeddings (``tie_word_embeddings``) are re-tied after loading.
    """
    directory = Path(directory)
    config = config or read_model_config(directory, family="dream")
    model = _build_on_meta(DreamModel, config)
    optional = frozenset({"lm_head.weight"}) if config.tie_word_embeddings else frozenset()
    model = load_state_into(model, checkpoint_shards(directory), dtype=dtype, device=device, optional=optional)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model


def load_dllm(folder: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"):
    """Load a LLaDA or Dream model from a checkpoint or zoo folder, whichever its config describes."""
    config = read_model_config(folder)
    loader = load_llada if isinstance(config, LLaDAConfig) else load_dream
    return loader(folder, dtype=dtype, device=device, config=config)
