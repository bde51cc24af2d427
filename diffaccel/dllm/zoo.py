"""Zoo loader for ``llada-addition``: the committed tiny LLaDA model trained on 4-digit addition.

``diffaccel.zoo.load("llada-addition")`` returns a :class:`~diffaccel.dllm.pipeline.LLaDAPipeline`
with a tokenizer that reads ``"1234+5678"``; its default sampling is one token per step over the
whole answer (``gen_length == steps == block_length == 8``). Weights are read from safetensors
only and never trained or downloaded at load time (``python -m diffaccel.dllm.train_addition``
produces them).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from ..zoo.weights_io import read_json, weights_dir
from .config import LLaDAConfig
from .llada import LLaDAModelLM
from .pipeline import LLaDAPipeline
from .sampler import SamplingConfig
from .tasks.addition import AdditionTask, AdditionTokenizer

ZOO_NAME = "llada-addition"


def weights_folder() -> Path:
    return weights_dir(ZOO_NAME)


def read_task(folder: Path | None = None) -> AdditionTask:
    folder = folder or weights_folder()
    task = read_json(folder / "config.json")["task"]
    return AdditionTask(n_digits=task["n_digits"], gen_length=task["gen_length"])


def load_llada_addition_model(folder: Path | None = None, device="cpu", dtype=torch.float32) -> LLaDAModelLM:
    folder = Path(folder) if folder is not None else weights_folder()
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"zoo weights for {ZOO_NAME!r} are missing at {folder}; train them with "
                                "`python -m diffaccel.dllm.train_addition`")
    config = LLaDAConfig.from_dict(read_json(folder / "config.json")["model"])
    model = LLaDAModelLM(config)
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model.to(device=device, dtype=dtype).eval()


class AdditionPipeline(LLaDAPipeline):
    """LLaDA pipeline whose defaults fit the addition task (answer length, one token per step)."""

    def __init__(self, model, task: AdditionTask) -> None:
        super().__init__(model, AdditionTokenizer(task.n_digits))
        self.task = task
        self.default_sampling = SamplingConfig(gen_length=task.gen_length, steps=task.gen_length,
                                               block_length=task.gen_length)


def load_llada_addition(device="cpu", dtype=torch.float32, folder: Path | None = None) -> AdditionPipeline:
    folder = Path(folder) if folder is not None else weights_folder()
    return AdditionPipeline(load_llada_addition_model(folder, device, dtype), read_task(folder))
