"""The shared sampler core against transcriptions of the published LLaDA and Dream samplers."""

import pytest
import torch

from diffaccel.dllm.pipeline import DreamPipeline, LLaDAPipeline
from diffaccel.dllm.sampler import MaskedDiffusionSampler, SamplingConfig, dream_generate, llada_generate

from .conftest import DREAM_MASK, LLADA_MASK, random_prompts, tiny_dream, tiny_llada
from .reference_samplers import ref_dream_sample, ref_llada_generate


@pytest.mark.parametrize(
    "options",
    [
        dict(steps=16, gen_length=16, block_length=16),
        dict(steps=8, gen_length=16, block_length=4),
        dict(steps=8, gen_length=16, block_length=8, remasking="random"),
        dict(steps=8, gen_length=16, block_length=8, temperature=0.7),
        dict(steps=8, gen_length=16, block_length=8, cfg_scale=1.5),
        dict(steps=16, gen_length=16, block_length=8, logits_eos_inf=True),
    ],
    ids=["one-block", "blocks", "random-remasking", "gumbel", "cfg", "eos-inf"],
)
def test_llada_generate_matches_the_reference_sampler(options):
    model, prompts = tiny_llada(), random_prompts(4, 7, 12)
    torch.manual_seed(123)
    expected = ref_llada_generate(model, prompts, mask_id=LLADA_MASK, **options)
    torch.manual_seed(123)
    got = llada_generate(model, prompts, mask_id=LLADA_MASK, **options)
    assert torch.equal(got, expected)
    assert not (got[:, 7:] == LLADA_MASK).all()


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy", "origin"])
def test_dream_native_sampler_matches_the_reference(alg):
    model, prompts = tiny_dream(), random_prompts(3, 5, 29)
    temperature = 0.8 if alg == "origin" else 0.0
    expected_counts = []
    torch.manual_seed(7)
    expected = ref_dream_sample(
        model, prompts, 8, 8, alg, temperature=temperature, mask_id=DREAM_MASK, transfers=expected_counts
    )
    torch.manual_seed(7)
    sampler = MaskedDiffusionSampler(model, family="dream", mask_id=DREAM_MASK)
    config = SamplingConfig(
        gen_length=8, steps=8, block_length=8, alg=alg, temperature=temperature, schedule="dream_native"
    )
    got = sampler.generate(prompts, config)
    assert torch.equal(got, expected)
    if alg != "origin":
        assert expected_counts == [0, 1, 1, 1, 1, 1, 1, 2]  # the native step-0 quirk, reproduced
        assert sampler.last_record.committed_tokens == 3 * 8


def test_dream_logits_are_shifted_one_position_right():
    """Dream's logit for position i comes from the output at i-1: with one step and one masked slot,
    the committed token is the argmax of the raw output at the last prompt position."""
    model, prompts = tiny_dream(), random_prompts(2, 5, 29)
    out = dream_generate(model, prompts, max_new_tokens=1, steps=1, alg="maskgit_plus", mask_id=DREAM_MASK)
    raw = model(torch.cat([prompts, torch.full((2, 1), DREAM_MASK)], 1)).logits
    assert torch.equal(out[:, -1], raw[:, 4].argmax(-1))


def test_linear_schedule_commits_one_token_per_step_in_block_order():
    model, prompts = tiny_llada(), random_prompts(2, 6, 12)
    sampler = MaskedDiffusionSampler(model, family="llada", mask_id=LLADA_MASK)
    seen = []
    handle = model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["input_ids"].clone() if "input_ids" in kw else a[0].clone()), with_kwargs=True
    )
    try:
        sampler.generate(prompts, SamplingConfig(gen_length=8, steps=8, block_length=4))
    finally:
        handle.remove()
    masks_left = [int((x[:, 6:] == LLADA_MASK).sum(1)[0]) for x in seen]
    assert masks_left == [8, 7, 6, 5, 4, 3, 2, 1]
    # the second block stays fully masked until the first is complete
    assert all(bool((x[:, 10:] == LLADA_MASK).all()) for x in seen[:4])
    assert sampler.last_record.forward_calls == 8


def test_pipelines_accept_ids_and_reject_bad_input():
    pipe = LLaDAPipeline(tiny_llada())
    ids = random_prompts(2, 5, 12)
    out = pipe(input_ids=ids, gen_length=8, steps=8, block_length=4)
    assert out.sequences.shape == (2, 13) and out.generated.shape == (2, 8) and out.texts is None
    with pytest.raises(ValueError, match="multiple of block_length"):
        pipe(ids, gen_length=8, steps=8, block_length=3)
    with pytest.raises(ValueError, match="multiple of the number of blocks"):
        pipe(ids, gen_length=8, steps=3, block_length=4)
    with pytest.raises(ValueError, match="mask token"):
        pipe(torch.full((1, 3), LLADA_MASK), gen_length=4, steps=4, block_length=4)
    with pytest.raises(TypeError, match="unknown sampling option"):
        pipe(ids, num_inference_steps=8)
    with pytest.raises(ValueError, match="tokenizer"):
        pipe("1+1")
    dream = DreamPipeline(tiny_dream())
    with pytest.raises(ValueError, match="no blocks"):
        dream(random_prompts(1, 4, 29), gen_length=8, steps=8, block_length=4)
    assert dream(
        random_prompts(1, 4, 29), gen_length=8, steps=8, block_length=4, schedule="linear"
    ).generated.shape == (1, 8)


@pytest.mark.parametrize("dtype, eos_eot", [(torch.float32, False), (torch.bfloat16, True)])
def test_proposals_on_the_masked_columns_equal_those_over_the_whole_sequence(dtype, eos_eot):
    """Greedy LLaDA proposals are computed on the columns between the first and last masked position only:
    at every masked position token and confidence equal `llada_propose` over the whole sequence (the
    official computation), bit for bit, also with exact ties; elsewhere mask id and -inf."""
    from diffaccel.dllm.confidence import llada_propose
    from diffaccel.dllm.sampler import DecodeRecord, DecodeRun

    torch.manual_seed(0)
    logits = torch.randn(3, 20, 11).round().to(dtype)  # rounded: many exact ties within a row
    x = torch.randint(0, 10, (3, 20))
    masked = torch.zeros(3, 20, dtype=torch.bool)
    masked[0, 9:15], masked[1, 11:13], masked[2, 14] = True, True, True
    x[masked] = LLADA_MASK
    sampler = MaskedDiffusionSampler(tiny_llada(), family="llada", mask_id=LLADA_MASK, eos_id=3, eot_id=4)
    config = SamplingConfig(confidence_eos_eot_inf=eos_eot)
    run = DecodeRun(x, None, config, 9, torch.arange(9), None, DecodeRecord(), 0)
    x0, confidence = sampler.propose(logits, masked, run)
    full_x0, full_confidence = llada_propose(logits, eos_id=3, eot_id=4, confidence_eos_eot_inf=eos_eot)
    assert torch.equal(x0[masked], full_x0[masked]) and torch.equal(confidence[masked], full_confidence[masked])
    assert bool((x0[:, :9] == LLADA_MASK).all()) and bool((confidence[:, 15:] == float("-inf")).all())
