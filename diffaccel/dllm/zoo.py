"""Zoo loaders for the dLLM models trained here on synthetic tasks (LLaDA and Dream architectures).

* ``llada-addition``: 4-digit addition, 11-token prompts, 8-token answers
  (``python -m diffaccel.dllm.train_addition``);
* ``dream-addition``: its Dream-architecture twin (Qwen2-style GQA, shifted logits) on the same task
  (``python -m diffaccel.dllm.train_addition --arch dream``);
* ``llada-recall``: passage recall (continue a 512-symbol passage from a cue), 515-token prompts,
  32-token answers, the cue fixed at the passage's start (``python -m diffaccel.dllm.train_recall
  --cue-position 0 ...``, the command in :data:`TRAINERS` and the manifest);
* ``llada-kv`` (loader only, no weights yet): multi-query associative recall (the values of 32 queried
  keys among 240 key-value records), 514-token prompts, 32-token answers
  (``python -m diffaccel.dllm.train_recall --task kv``), or its filler variant (fewer records among
  filler tokens, ``--n-filler``), whichever the folder's ``diffaccel_task`` records.

``diffaccel.zoo.load(name)`` returns a :class:`~diffaccel.dllm.pipeline.LLaDAPipeline` (a
:class:`~diffaccel.dllm.pipeline.DreamPipeline` for Dream) with a tokenizer for the task's text prompts,
the task itself (``pipe.task``, for held-out problems) and default sampling of one token per step over
the whole answer (for Dream our ``schedule="linear"``: Dream's native timestep schedule commits nothing at
the first step and two tokens at the last; ``schedule="dream_native"`` selects it). The folders use the
hub layout (:mod:`diffaccel.dllm.hub_config`), so :func:`diffaccel.dllm.loading.load_dllm` (and
:func:`~diffaccel.dllm.load_llada` / :func:`~diffaccel.dllm.load_dream`) reads them like a downloaded
checkpoint. Weights are read from safetensors only and never trained or downloaded at load time.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..zoo.weights_io import weights_dir
from .hub_config import read_task as read_task_entry
from .loading import load_dllm
from .pipeline import DreamPipeline, LLaDAPipeline
from .tasks.addition import AdditionTask, AdditionTokenizer
from .tasks.kv import KeyValueTask, KeyValueTokenizer
from .tasks.recall import RecallTask, RecallTokenizer
from .training import model_family

ZOO_NAME = "llada-addition"
DREAM_ZOO_NAME = "dream-addition"
RECALL_ZOO_NAME = "llada-recall"
KV_ZOO_NAME = "llada-kv"
TRAINERS = {
    ZOO_NAME: "diffaccel.dllm.train_addition",
    DREAM_ZOO_NAME: "diffaccel.dllm.train_addition --arch dream",
    # the committed recipe (its manifest's command): the trainer's defaults are the free-cue task
    RECALL_ZOO_NAME: "diffaccel.dllm.train_recall --seed 0 --cue-position 0 --curriculum-start 512 --length-spread 0 "
    "--d-model 64 --n-layers 2 --n-heads 2 --ff 128 --batch-size 16 --lr 2e-3 --warmup 50 --steps 1500",
    KV_ZOO_NAME: "diffaccel.dllm.train_recall --task kv",
}
#: the architecture each zoo folder must hold (its config.json's family)
FAMILIES = {ZOO_NAME: "llada", DREAM_ZOO_NAME: "dream", RECALL_ZOO_NAME: "llada", KV_ZOO_NAME: "llada"}


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
        n_records=task["n_records"],
        gen_length=task["gen_length"],
        n_keys=task["n_keys"],
        n_values=task["n_values"],
        n_filler=task.get("n_filler", 0),
        n_filler_symbols=task.get("n_filler_symbols", 0),
        layout=task.get("layout", "pairs"),
        echo=task.get("echo", False),
    )


def read_zoo_task(folder: Path) -> AdditionTask | RecallTask | KeyValueTask:
    """The task a zoo folder records, whichever it is."""
    readers = {"addition": read_task, "recall": read_recall_task, "kv": read_kv_task}
    name = read_task_entry(folder).get("name")
    if name not in readers:
        raise ValueError(f"{folder}/config.json records task {name!r}; known: {sorted(readers)}")
    return readers[name](folder)


def load_zoo_model(name: str, folder: Path | None = None, device="cpu", dtype=torch.float32):
    """The model of zoo folder ``name`` through the checkpoint loader; its config must be of the zoo
    model's architecture."""
    folder = Path(folder) if folder is not None else weights_folder(name)
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"zoo weights for {name!r} are missing at {folder}; train them with `python -m {TRAINERS[name]}`"
        )
    model = load_dllm(folder, dtype=dtype, device=device).eval()
    if model_family(model) != FAMILIES[name]:
        raise ValueError(f"{folder} holds a {model_family(model)!r} model, but {name!r} is {FAMILIES[name]!r}")
    return model


def load_llada_addition_model(folder: Path | None = None, device="cpu", dtype=torch.float32):
    return load_zoo_model(ZOO_NAME, folder, device, dtype)


def load_dream_addition_model(folder: Path | None = None, device="cpu", dtype=torch.float32):
    return load_zoo_model(DREAM_ZOO_NAME, folder, device, dtype)


def load_recall_model(folder: Path | None = None, device="cpu", dtype=torch.float32):
    return load_zoo_model(RECALL_ZOO_NAME, folder, device, dtype)


class TaskDefaults:
    """Pipeline defaults that fit a zoo task: its answer length, one token per step, one block."""

    def __init__(self, model, task, tokenizer) -> None:
        super().__init__(model, tokenizer)
        self.task = task
        self.default_sampling = replace(
            self.default_sampling,
            gen_length=task.gen_length,
            steps=task.gen_length,
            block_length=task.gen_length,
            schedule="linear",
        )


class TaskPipeline(TaskDefaults, LLaDAPipeline):
    """LLaDA pipeline with a zoo task's defaults."""


class DreamTaskPipeline(TaskDefaults, DreamPipeline):
    """Dream pipeline with a zoo task's defaults (``alg="maskgit_plus"``, greedy, our one-token-per-step schedule)."""


class AdditionPipeline(TaskPipeline):
    def __init__(self, model, task: AdditionTask) -> None:
        super().__init__(model, task, AdditionTokenizer(task.n_digits))


class DreamAdditionPipeline(DreamTaskPipeline):
    def __init__(self, model, task: AdditionTask) -> None:
        super().__init__(model, task, AdditionTokenizer(task.n_digits))


class RecallPipeline(TaskPipeline):
    def __init__(self, model, task: RecallTask) -> None:
        super().__init__(model, task, RecallTokenizer(task))


class KeyValuePipeline(TaskPipeline):
    def __init__(self, model, task: KeyValueTask) -> None:
        super().__init__(model, task, KeyValueTokenizer(task))


def load_llada_addition(device="cpu", dtype=torch.float32, folder: Path | None = None) -> AdditionPipeline:
    folder = Path(folder) if folder is not None else weights_folder()
    return AdditionPipeline(load_llada_addition_model(folder, device, dtype), read_task(folder))


def load_dream_addition(device="cpu", dtype=torch.float32, folder: Path | None = None) -> DreamAdditionPipeline:
    folder = Path(folder) if folder is not None else weights_folder(DREAM_ZOO_NAME)
    return DreamAdditionPipeline(load_dream_addition_model(folder, device, dtype), read_task(folder))


def load_llada_recall(device="cpu", dtype=torch.float32, folder: Path | None = None) -> RecallPipeline:
    folder = Path(folder) if folder is not None else weights_folder(RECALL_ZOO_NAME)
    return RecallPipeline(load_recall_model(folder, device, dtype), read_recall_task(folder))


def load_llada_kv(device="cpu", dtype=torch.float32, folder: Path | None = None) -> KeyValuePipeline:
    folder = Path(folder) if folder is not None else weights_folder(KV_ZOO_NAME)
    return KeyValuePipeline(load_zoo_model(KV_ZOO_NAME, folder, device, dtype), read_kv_task(folder))
