"""diffusers' LLaDA2Pipeline driving a diffaccel LLaDA model, with caches attached."""

import copy

import pytest
import torch

from diffaccel.dllm.dkv_cache import DKVCacheConfig
from diffaccel.dllm.fast_dllm import FastDLLMConfig
from diffaccel.dllm.llada2 import attach_to_llada2, detach_from_llada2, tiny_llada2_pipeline
from diffaccel.dllm.ssd import SSDConfig

from .conftest import random_prompts, tiny_llada

CALL = dict(gen_length=8, num_inference_steps=4, sampling_method="greedy", threshold=0.95, editing_threshold=None,
            output_type="seq", use_chat_template=False)


def _pipe(n_layers):
    pipe = tiny_llada2_pipeline(tiny_llada(n_layers), block_length=4)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_llada2_pipeline_runs_the_diffaccel_model_like_the_plain_forward():
    pipe, ids = _pipe(2), random_prompts(2, 8, 12)
    out = pipe(input_ids=ids, **CALL).sequences
    assert out.shape == (2, 8) and not (out == pipe.mask_token_id).any()


@pytest.mark.parametrize("config", [DKVCacheConfig(refresh_interval=2), DKVCacheConfig(refresh_interval=100),
                                    FastDLLMConfig(cache="prefix"), FastDLLMConfig(cache="dual")],
                         ids=lambda c: c.strify())
def test_caches_attached_to_llada2_are_exact_on_a_one_layer_model(config):
    pipe, ids = _pipe(1), random_prompts(2, 8, 12)
    reference = copy.deepcopy(pipe.model)
    expected = pipe(input_ids=ids, **CALL).sequences
    calls = []
    handle = pipe.model.body.register_forward_hook(
        lambda m, args, kwargs, out: calls.append((args[0], kwargs["decode_step"], out.logits)), with_kwargs=True)
    attachment = attach_to_llada2(pipe, config)
    try:
        got = pipe(input_ids=ids, **CALL).sequences
    finally:
        handle.remove()
        detach_from_llada2(pipe, attachment)
    assert torch.equal(got, expected)
    assert attachment.planner.cached_forwards > 0
    assert [c[1].block_index for c in calls] == [0] * 4 + [1] * 4  # two generated blocks of 4 steps
    for x, step, logits in calls:
        # the logits the scheduler commits from: masked positions of the current block
        needed = (x == step.mask_id) & (torch.arange(x.shape[1]) >= step.block_start)
        torch.testing.assert_close(logits[needed], reference(x).logits[needed], atol=1e-10, rtol=1e-10)


def test_refresh_every_step_matches_on_a_deeper_model_and_detach_restores_it():
    pipe, ids = _pipe(3), random_prompts(2, 8, 12)
    expected = pipe(input_ids=ids, **CALL).sequences
    attachment = attach_to_llada2(pipe, DKVCacheConfig(refresh_interval=1))
    try:
        assert torch.equal(pipe(input_ids=ids, **CALL).sequences, expected)
    finally:
        detach_from_llada2(pipe, attachment)
    assert torch.equal(pipe(input_ids=ids, **CALL).sequences, expected)
    with pytest.raises(ValueError, match="cannot attach"):
        attach_to_llada2(pipe, SSDConfig())
