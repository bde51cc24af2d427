"""Zoo loaders for the dLLM models trained here on synthetic tasks (LLaDA architecture).

* ``llada-addition``: 4-digit addition, 11-token prompts, 8-token answers
  (``python -m diffaccel.dllm.train_addition``);
* ``llada-recall``: passage recall (continue a 512-symbol passage from a cue), 515-token prompts,
  32-token answers (``python -m diffaccel.dllm.train_recall``);
* ``llada-kv``: multi-query associative recall (the values of 32 queried keys among 240 key-value
  records), 514-token prompts, 32-token answers (``python -m diffaccel.dllm.train_recall --task kv``).

``diffaccel.zoo.load(name)`` returns a :class:`~diffaccel.dllm.pipeline.LLaDAPipeline` with a tokenizer
for the task's text prompts, the task itself (``pipe.task``, for held-out problems) and default
sampling of one token per step over the whole answer. The folders use the hub layout
(:mod:`diffaccel.dllm.hub_config`), so :func:`diffaccel.dllm.load_llada` reads them like a downloaded
checkpoint. Weights are read from safetensors only and never trained or downloaded at load time.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..zoo.weights_io import weights_dir
from .hub_config import read_task as read_task_entry
from .llada import LLaDAModelLM
from .loading import load_llada
from .pipeline import LLaDAPipeline
from .sampler import SamplingConfig
from .tasks.addition import AdditionTask, AdditionTokenizer
from .tasks.kv import KeyValueTask, KeyValueTokenizer
from .tasks.recall import RecallTask, RecallTokenizer

ZOO_NAME = "llada-addition"
RECALL_ZOO_NAME = "llada-recall"
KV_ZOO_NAME = "llada-kv"
TRAINERS = {
    ZOO_NAME: "diffaccel.dllm.train_addition",
    RECALL_ZOO_NAME: "diffaccel.dllm.train_recall",
    KV_ZOO_NAME: "diffaccel.dllm.train_recall --task kv",
}


def weights_folder(name: str = ZOO_NAME) -> Path:
    return weights_dir(name)


def read_task(folder: Path | None = None) -> AdditionTask:
    task = read_task_entry(folder or weights_folder())
    return AdditionTask(n_digits=task["n_digits"], gen_length=task["gen_length"])


def read_recall_task(folder: Path | None = None) -> RecallTask:
    task = read_task_entry(folder or weights_folder(RECALL_ZOO_NAME))
    return RecallTask(
        passage_length=task["passage_length"],
        gen_length=task["gen_length"],
        n_symbols=task["n_symbols"],
        cue_position=task.get("cue_position"),
    )


def read_kv_task(folder: Path | None = None) -> KeyValueTask:
    task = read_task_entry(folder or weights_folder(KV_ZOO_NAME))
    return KeyValueTask(
        n_records=task["n_records"], gen_length=task["gen_length"], n_keys=task["n_keys"], n_values=task["n_values"]
    )


def read_zoo_task(folder: Path) -> AdditionTask | RecallTask | KeyValueTask:
    """The task a zoo folder records, whichever it is."""
    readers = {"addition": read_task, "recall": read_recall_task, "kv": read_kv_task}
    name = read_task_entry(folder).get("name")
    if name not in readers:
        raise ValueError(f"{folder}/config.json records task {name!r}; known: {sorted(readers)}")
    return readers[name](folder)


def load_zoo_model(name: str, folder: Path | None = None, device="cpu", dtype=torch.float32) -> LLaDAModelLM:
    folder = Path(folder) if folder is not None else weights_folder(name)
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"zoo weights for {name!r} are missing at {folder}; train them with `python -m {TRAINERS[name]}`"
        )
    return load_llada(folder, dtype=dtype, device=device).eval()


def load_llada_addition_model(folder: Path | None = None, device="cpu", dtype=torch.float32) -> LLaDAModelLM:
    return load_zoo_model(ZOO_NAME, folder, device, dtype)


def load_recall_model(folder: Path | None = None, device="cpu", dtype=torch.float32) -> LLaDAModelLM:
    return load_zoo_model(RECALL_ZOO_NAME, folder, device, dtype)


class TaskPipeline(LLaDAPipeline):
    """LLaDA pipeline whose defaults fit a zoo task: its answer length, one token per step, one block."""

    def __init__(self, model, task, tokenizer) -> None:
        super().__init__(model, tokenizer)
        self.task = task
        self.default_sampling = SamplingConfig(
            gen_length=task.gen_length, steps=task.gen_length, block_length=task.gen_length
        )


class KeyValuePipeline(TaskPipeline):
    def __init__(self, model, task: KeyValueTask) -> None:
        super().__init__(model, task, KeyValueTokenizer(task))


class AdditionPipeline(TaskPipeline):
    def __init__(self, model, task: AdditionTask) -> None:
        super().__init__(model, task, AdditionTokenizer(task.n_digits))


class RecallPipeline(TaskPipeline):
    def __init__(self, model, task: RecallTask) -> None:
        super().__init__(model, task, RecallTokenizer(task))


def load_llada_addition(device="cpu", dtype=torch.float32, folder: Path | None = None) -> AdditionPipeline:
    folder = Path(folder) if folder is not None else weights_folder()
    return AdditionPipeline(load_llada_addition_model(folder, device, dtype), read_task(folder))


def load_llada_recall(device="cpu", dtype=torch.float32, folder: Path | None = None) -> RecallPipeline:
    folder = Path(folder) if folder is not None else weights_folder(RECALL_ZOO_NAME)
    return RecallPipeline(load_recall_model(folder, device, dtype), read_recall_task(folder))


def load_llada_kv(device="cpu", dtype=torch.float32, folder: Path | None = None) -> KeyValuePipeline:
    folder = Path(folder) if folder is not None else weights_folder(KV_ZOO_NAME)
    return KeyValuePipeline(load_zoo_model(KV_ZOO_NAME, folder, device, dtype), read_kv_task(folder))
