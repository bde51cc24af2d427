"""What a comparison record measured, as a short digest, so that `--resume` never reuses a row measured on
other weights or under other defaults.

A row's tag names what the user asked for (`dkv-cache`, `bac:num_updates=5`), not what ran: the strategy's
defaults, the sampler's numerics, and the zoo weights themselves live in code and files that change between
versions (a retrained `dp-reach`, a new default confidence rule). Every record therefore carries
`config_digest`, a digest of everything that decides its numbers; a finished record whose digest differs from
what this code would run now is measured again, with a one-line warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import torch

logger = logging.getLogger(__name__)


def canonical_digest(payload: Any) -> str:
    """16 hex digits of the sha256 of `payload` serialised canonically (sorted keys, `repr` for the rest)."""
    text = json.dumps(payload, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def module_digest(module: torch.nn.Module) -> str:
    """Digest of a module's parameters and buffers (names, dtypes, shapes and bytes): equal for the same weights
    however they were loaded, different after any retraining. Reads every tensor once (cheap for zoo models)."""
    digest = hashlib.sha256()
    for name, tensor in sorted({**dict(module.named_parameters()), **dict(module.named_buffers())}.items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)};".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()[:16]


def config_payload(config) -> dict[str, Any]:
    """A strategy config as data: its name and every option, defaults included."""
    return {"strategy": config.strategy_name, **config.as_dict()}


def finished_as_now(store, key: tuple, digest: str) -> bool:
    """Whether `store` holds a finished record under `key` that measured what `digest` describes. A finished
    record with another digest, or with none (written before digests), is stale: say so, and measure it again."""
    if not store.is_done(key):
        return False
    recorded = store.get(key).get("config_digest")
    if recorded == digest:
        return True
    logger.warning(
        "%s (seed %s): the finished record was measured %s; measuring it again",
        key[1],
        key[2],
        "before run digests existed" if recorded is None else "on other weights or settings",
    )
    return False
