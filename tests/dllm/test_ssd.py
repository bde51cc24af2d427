"""Self-speculative decoding is lossless: identical to stepwise greedy decoding (arXiv 2510.04147; our reconstruction)."""

import pytest
import torch

from diffaccel.dllm.sampler import MaskedDiffusionSampler, SamplingConfig, dream_generate
from diffaccel.dllm.ssd import SelfSpeculativeDecoding, SSDConfig

from .conftest import DREAM_MASK, random_prompts, tiny_dream, tiny_llada


def _run(pipe_or_model, prompts, config, ssd=None, family="llada", mask_id=None):
    sampler = MaskedDiffusionSampler(pipe_or_model, family=family, mask_id=mask_id)
    out = sampler.generate(prompts, config, policy=SelfSpeculativeDecoding(ssd) if ssd else None)
    return out, sampler.last_record


@pytest.mark.parametrize(
    "ssd",
    [
        SSDConfig(draft_length=2),
        SSDConfig(draft_length=4),
        SSDConfig(draft_length=8),
        SSDConfig(draft_length=2, adaptive=True),
    ],
    ids=["N2", "N4", "N8", "adaptive"],
)
def test_ssd_equals_stepwise_decoding_on_128_addition_prompts(zoo_pipe, ssd):
    prompts, _ = zoo_pipe.task.held_out(128, seed=99)
    g = zoo_pipe.task.gen_length
    for block_length in (g, g // 2):
        config = SamplingConfig(gen_length=g, steps=g, block_length=block_length)
        expected, stepwise = _run(zoo_pipe.model, prompts, config, mask_id=zoo_pipe.mask_id)
        got, record = _run(zoo_pipe.model, prompts, config, ssd, mask_id=zoo_pipe.mask_id)
        assert torch.equal(got, expected)
        assert all(
            1 <= a <= (ssd.max_draft_length if ssd.adaptive else ssd.draft_length) + 1
            for a in record.accepted_per_round
        )
        assert sum(record.accepted_per_round) == 128 * g
        assert record.forward_calls < stepwise.forward_calls


def test_ssd_with_no_drafts_takes_one_round_per_step():
    model, prompts = tiny_llada(2), random_prompts(5, 7, 12)
    config = SamplingConfig(gen_length=8, steps=8, block_length=4)
    expected, _ = _run(model, prompts, config, mask_id=14)
    got, record = _run(model, prompts, config, SSDConfig(draft_length=0), mask_id=14)
    assert torch.equal(got, expected)
    assert record.accepted_per_round == [1] * 40 and record.steps == 40


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy"])
def test_ssd_is_lossless_on_a_dream_model(alg):
    model, prompts = tiny_dream(2), random_prompts(20, 5, 29)
    options = dict(max_new_tokens=12, steps=12, block_length=4, schedule="linear", alg=alg, mask_id=DREAM_MASK)
    expected = dream_generate(model, prompts, **options)
    got = dream_generate(model, prompts, policy=SelfSpeculativeDecoding(SSDConfig(draft_length=3)), **options)
    assert torch.equal(got, expected)


def test_ssd_rejects_non_greedy_references():
    model, prompts = tiny_llada(1), random_prompts(1, 4, 12)
    for config in (
        SamplingConfig(gen_length=8, steps=4, block_length=8),
        SamplingConfig(gen_length=8, steps=8, block_length=8, temperature=0.5),
        SamplingConfig(gen_length=8, steps=8, block_length=8, remasking="random"),
    ):
        with pytest.raises(ValueError, match="ssd"):
            _run(model, prompts, config, SSDConfig(), mask_id=14)
    with pytest.raises(ValueError, match="draft_length"):
        SSDConfig(draft_length=-1)


@pytest.mark.parametrize(
    "ssd",
    [
        SSDConfig(draft_length=3),
        SSDConfig(draft_length=6, max_verify_rows=8),
        SSDConfig(adaptive=True, max_verify_rows=12),
    ],
    ids=["N3", "N6-rows8", "adaptive-rows12"],
)
def test_ssd_equals_stepwise_decoding_on_a_tiny_random_llada(ssd):
    model, prompts = tiny_llada(2, seed=4), random_prompts(6, 9, 12)
    config = SamplingConfig(gen_length=16, steps=16, block_length=8)
    expected, stepwise = _run(model, prompts, config, mask_id=14)
    assert len(set(expected[:, 9:].flatten().tolist())) > 2  # not a degenerate constant answer
    rows = []
    handle = model.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    try:
        got, record = _run(model, prompts, config, ssd, mask_id=14)
    finally:
        handle.remove()
    assert torch.equal(got, expected)
    assert record.forward_calls < stepwise.forward_calls
    if ssd.max_verify_rows is not None:
        assert max(rows[1:]) <= max(ssd.max_verify_rows, 6)  # never below one node per row still decoding


def test_ssd_with_a_row_budget_equal_to_the_batch_decodes_stepwise():
    """max_verify_rows == batch: every chain is the reference step alone, so SSD runs exactly the stepwise
    forwards (one per step, every row) and commits the same tokens."""
    model, prompts = tiny_llada(2, seed=4), random_prompts(6, 9, 12)
    config = SamplingConfig(gen_length=16, steps=16, block_length=8)
    expected, stepwise = _run(model, prompts, config, mask_id=14)
    got, record = _run(model, prompts, config, SSDConfig(draft_length=4, max_verify_rows=6), mask_id=14)
    assert torch.equal(got, expected)
    assert (record.forward_calls, record.forward_rows) == (stepwise.forward_calls, stepwise.forward_rows)


def test_ssd_row_budget_is_validated():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_verify_rows"):
            SSDConfig(max_verify_rows=bad)
