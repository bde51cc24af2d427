"""diffusers' LLaDA2Pipeline driving a diffaccel LLaDA model, with strategies attached by diffaccel.wrap."""

import copy
import math

import pytest
import torch
from diffusers.hooks import HookRegistry

import diffaccel
import diffaccel.dllm.sparsed as sparsed_module
from diffaccel.dllm.dkv_cache import DKVCacheConfig
from diffaccel.dllm.fast_dllm import FastDLLMConfig
from diffaccel.dllm.llada2 import tiny_llada2_pipeline

from .conftest import random_prompts, tiny_llada

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without")

# prompt 8 + answer 8 in blocks of 4: two generated blocks (windows of 12 and 16 tokens), 4 steps each
CALL = dict(
    gen_length=8,
    num_inference_steps=4,
    sampling_method="greedy",
    threshold=0.95,
    editing_threshold=None,
    output_type="seq",
    use_chat_template=False,
)


def _pipe(n_layers, dtype=torch.float64):
    pipe = tiny_llada2_pipeline(tiny_llada(n_layers, dtype=dtype), block_length=4)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _hook_names(model):
    return {
        name
        for m in model.modules()
        if getattr(m, "_diffusers_hook", None) is not None
        for name in m._diffusers_hook.hooks
    }


def test_llada2_pipeline_runs_the_diffaccel_model_like_the_plain_forward():
    pipe, ids = _pipe(2), random_prompts(2, 8, 12)
    out = pipe(input_ids=ids, **CALL).sequences
    assert out.shape == (2, 8) and not (out == pipe.mask_token_id).any()


@pytest.mark.parametrize(
    "config",
    [
        DKVCacheConfig(refresh_interval=2),
        DKVCacheConfig(refresh_interval=100),
        FastDLLMConfig(threshold=None, cache="prefix"),
        FastDLLMConfig(threshold=None, cache="dual"),
    ],
    ids=lambda c: c.strify(),
)
def test_caches_wrapped_on_llada2_are_exact_on_a_one_layer_model(config):
    pipe, ids = _pipe(1), random_prompts(2, 8, 12)
    reference = copy.deepcopy(pipe.model)
    expected = pipe(input_ids=ids, **CALL).sequences
    calls = []
    handle = pipe.model.body.register_forward_hook(
        lambda m, args, kwargs, out: calls.append((args[0], kwargs["decode_step"], out.logits)), with_kwargs=True
    )
    diffaccel.wrap(pipe, config)
    try:
        got = pipe(input_ids=ids, **CALL).sequences
        stats = diffaccel.summary(pipe)
    finally:
        handle.remove()
        diffaccel.unwrap(pipe)
    assert torch.equal(got, expected)
    assert stats.extra["cached_forwards"] > 0 and stats.extra["forwards"] == 8 == stats.steps
    assert 0 < stats.computed_fraction < 1
    assert [c[1].block_index for c in calls] == [0] * 4 + [1] * 4  # two generated blocks of 4 steps
    assert [c[0].shape[1] for c in calls] == [12] * 4 + [16] * 4  # the window grows within the run
    for x, step, logits in calls:
        # the logits the scheduler commits from: masked positions of the current block
        needed = (x == step.mask_id)[:, step.block_start :]
        assert logits.shape[1] == step.block_end - step.block_start == x.shape[1] - step.block_start
        expected_logits = reference(x).logits[:, step.block_start :]  # the step hook asks for the last block only
        torch.testing.assert_close(logits[needed], expected_logits[needed], atol=1e-10, rtol=1e-10)
    assert not _hook_names(pipe.model) and torch.equal(pipe(input_ids=ids, **CALL).sequences, expected)


@pytest.mark.parametrize(
    "config",
    [
        DKVCacheConfig(refresh_interval=100),
        FastDLLMConfig(threshold=None, cache="prefix"),
        FastDLLMConfig(threshold=None, cache="dual"),
    ],
    ids=lambda c: c.strify(),
)
def test_caches_stay_exact_when_the_pipeline_edits_decoded_tokens(config):
    """LLaDA2Pipeline's editing rule reads the logits of decoded block positions, so caches must run them."""
    pipe, ids = _pipe(1), random_prompts(8, 8, 12)
    editing = {**CALL, "editing_threshold": 0.5}
    expected = pipe(input_ids=ids, **editing).sequences
    assert not torch.equal(expected, pipe(input_ids=ids, **CALL).sequences)  # edits happen in this setting
    diffaccel.wrap(pipe, config)
    try:
        got = pipe(input_ids=ids, **editing).sequences
        assert diffaccel.summary(pipe).extra["cached_forwards"] > 0
    finally:
        diffaccel.unwrap(pipe)
    assert torch.equal(got, expected)


def test_refresh_every_step_matches_on_a_deeper_model_and_each_call_is_a_new_run():
    pipe, ids = _pipe(3), random_prompts(2, 8, 12)
    expected = pipe(input_ids=ids, **CALL).sequences
    diffaccel.wrap(pipe, "dkv-cache", refresh_interval=1)
    try:
        pipe(input_ids=ids[:1], **CALL)  # another batch size first: the next call starts afresh
        assert torch.equal(pipe(input_ids=ids, **CALL).sequences, expected)
        stats = diffaccel.summary(pipe)
    finally:
        diffaccel.unwrap(pipe)
    assert stats.full_steps == 8 and stats.extra["cached_forwards"] == 0 and stats.computed_fraction == 1.0
    assert torch.equal(pipe(input_ids=ids, **CALL).sequences, expected)


def test_sparsed_on_llada2_rebuilds_its_pattern_when_the_window_grows(monkeypatch):
    pipe, ids = _pipe(2, dtype=torch.float32), random_prompts(2, 8, 12)
    expected = pipe(input_ids=ids, **CALL).sequences
    diffaccel.wrap(pipe, "sparsed", skip=1.0, block_size=4, compile=False)
    try:
        assert torch.equal(pipe(input_ids=ids, **CALL).sequences, expected)  # never leaves dense
        assert diffaccel.summary(pipe).extra["sparse_attention_calls"] == 0
    finally:
        diffaccel.unwrap(pipe)

    built = []
    real_build = sparsed_module.build_sparse_pattern
    monkeypatch.setattr(
        sparsed_module, "build_sparse_pattern", lambda q, k, **kw: built.append(q.shape[2]) or real_build(q, k, **kw)
    )
    diffaccel.wrap(pipe, "sparsed", skip=0.2, select=1.0, block_size=4, compile=False)
    try:
        got = pipe(input_ids=ids, **CALL).sequences
        stats = diffaccel.summary(pipe)
    finally:
        diffaccel.unwrap(pipe)
    assert torch.equal(got, expected)  # select=1 keeps every block: dense up to kernel numerics
    t_star = math.floor(8 * 0.2) + 1  # 8 steps in the run: pattern at step 2 (window 12, 4th step is sparse)
    assert t_star == 2
    assert built == [12, 12, 16, 16]  # two layers at t*, again at the first step of the 16-token window
    assert stats.extra["sparse_attention_calls"] == 2 * (1 + 3)
    assert stats.extra["attention_kept_fraction"] == 1.0


def test_strategies_that_need_the_decoding_loop_are_refused_and_leave_no_hooks():
    pipe, ids = _pipe(1), random_prompts(1, 8, 12)
    expected = pipe(input_ids=ids, **CALL).sequences
    for spec, options, error, match in [
        ("ssd", {}, TypeError, "decoding loop"),
        ("dkv-cache", {"variant": "greedy"}, ValueError, "LLaDA2Pipeline does not have"),
        ("fast-dllm", {"cache": "prefix"}, ValueError, "threshold=None"),
    ]:
        with pytest.raises(error, match=match):
            diffaccel.wrap(pipe, spec, **options)
        assert not _hook_names(pipe.model) and not hasattr(pipe, "_diffaccel")
    assert torch.equal(pipe(input_ids=ids, **CALL).sequences, expected)
    assert HookRegistry.check_if_exists_or_initialize(pipe.model).hooks == {}


def test_a_model_that_is_not_a_diffaccel_port_gets_a_clear_error():
    from diffusers import BlockRefinementScheduler, LLaDA2Pipeline

    class RemoteCodeModel(torch.nn.Module):  # stands in for a remote-code LLaDA2 MoE model
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(2, 2)

        def forward(self, input_ids, attention_mask=None, position_ids=None):
            raise AssertionError("not called")

    pipe = LLaDA2Pipeline(model=RemoteCodeModel(), scheduler=BlockRefinementScheduler(block_length=4))
    for spec in ("dkv-cache", "sparsed"):
        with pytest.raises(TypeError, match="not a diffaccel.dllm model"):
            diffaccel.wrap(pipe, spec)
        assert not _hook_names(pipe.model) and not hasattr(pipe, "_diffaccel")
