"""The committed llada-recall zoo model (the long-context model of the dLLM tables): its folder is a hub LLaDA
checkpoint matching its manifest, it reproduces its manifest's exact match, its answers are read from the
far-away passage (not remembered), and the lossless strategies stay lossless on it."""

import json

import pytest
import torch

from diffaccel import zoo
from diffaccel.dllm import load_llada
from diffaccel.dllm.dkv_cache import DKVCacheConfig
from diffaccel.dllm.llada import LLaDAModelLM
from diffaccel.dllm.loading import load_dllm
from diffaccel.dllm.ssd import SSDConfig
from diffaccel.dllm.zoo import RECALL_ZOO_NAME, weights_folder
from diffaccel.zoo.weights_io import sha256_of

from .conftest import wrapped_run


@pytest.fixture(scope="module")
def recall_pipe():
    return zoo.load(RECALL_ZOO_NAME)


@pytest.fixture(scope="module")
def manifest():
    return json.loads((weights_folder(RECALL_ZOO_NAME) / "manifest.json").read_text())


def test_zoo_folder_is_a_hub_llada_checkpoint_matching_its_manifest(recall_pipe, manifest):
    folder = weights_folder(RECALL_ZOO_NAME)
    assert manifest["sha256"]["model.safetensors"] == sha256_of(folder / "model.safetensors")
    assert manifest["command"].startswith("python -m diffaccel.dllm.train_recall")
    assert {"seed", "train_time_s", "final_loss", "eval"} <= set(manifest)
    raw = json.loads((folder / "config.json").read_text())
    assert raw["model_type"] == "llada" and raw["architectures"] == ["LLaDAModelLM"] and raw["rope"] is True
    model = load_dllm(folder)
    assert type(model) is LLaDAModelLM and model.config == load_llada(folder).config
    task = recall_pipe.task
    assert task.prompt_length >= 512 and task.gen_length >= 32  # the long-context bar


def test_zoo_model_reproduces_its_manifest_exact_match_on_a_subset(recall_pipe, manifest):
    """The first 16 of the manifest's held-out prompts, stepwise (one token per step, one block of 32): with the
    recorded 100 %, every one right."""
    task, g = recall_pipe.task, recall_pipe.task.gen_length
    assert manifest["eval"][f"exact_match_stepwise_block{g}"] == 1.0
    prompts, answers = task.held_out(16, seed=manifest["eval"]["held_out_seed"])
    out = recall_pipe(input_ids=prompts).generated
    assert torch.equal(out, answers)


def test_answers_are_read_from_the_far_passage_not_remembered(recall_pipe):
    """Shuffle the stretch of the passage that the answer copies (about 500 tokens before the answer): the
    model's answer follows the shuffled passage, so every answer token is read from far-away context."""
    task = recall_pipe.task
    assert task.cue_position == 0
    prompts, answers = task.held_out(4, seed=11)
    stretch = slice(2, 2 + task.gen_length)  # BOS, the cue, then the symbols after it
    shuffled = prompts.clone()
    order = torch.randperm(task.gen_length, generator=torch.Generator().manual_seed(0))
    shuffled[:, stretch] = prompts[:, stretch][:, order]
    assert not torch.equal(shuffled, prompts)
    distance = prompts.shape[1] - stretch.start
    assert distance >= 500
    out = recall_pipe(input_ids=shuffled).generated
    assert torch.equal(out, shuffled[:, stretch]) and not torch.equal(out, answers)


def test_lossless_strategies_stay_token_identical_on_the_zoo_model(recall_pipe):
    """dKV-Cache refreshed every step and SSD give stepwise decoding's tokens on the long prompts."""
    prompts, _ = recall_pipe.task.held_out(4, seed=3)
    expected = recall_pipe(input_ids=prompts).generated
    stepwise_forwards = recall_pipe.last_record.forward_calls
    assert torch.equal(wrapped_run(recall_pipe, DKVCacheConfig(refresh_interval=1), prompts), expected)
    assert torch.equal(wrapped_run(recall_pipe, SSDConfig(draft_length=4), prompts), expected)
    assert recall_pipe.last_record.forward_calls < stepwise_forwards


def test_the_zoo_trainer_command_is_the_manifest_recipe_and_the_free_cue_default_writes_elsewhere(manifest):
    """The command the zoo names for llada-recall (e.g. when its weights are missing) defines the same run as the
    committed manifest's; the trainer's default task (the cue anywhere, another task) writes to its own folder,
    never over llada-recall."""
    import shlex

    from diffaccel.dllm.train_recall import FREE_CUE_NAME, parse_args
    from diffaccel.dllm.training import run_arguments
    from diffaccel.dllm.zoo import TRAINERS

    def run_of(command: str) -> dict:
        words = shlex.split(command)
        return run_arguments(parse_args(words[words.index("diffaccel.dllm.train_recall") + 1 :]))

    assert run_of(TRAINERS[RECALL_ZOO_NAME]) == run_of(manifest["command"])
    assert parse_args([]).output.name == FREE_CUE_NAME != RECALL_ZOO_NAME
    assert parse_args(["--cue-position", "0"]).output.name == RECALL_ZOO_NAME
    assert parse_args(["--task", "kv"]).output.name == "llada-kv"
