"""Stepwise decoding is token-identical to transcriptions of the official samplers, ties included.

The tie model below gives every masked position with the same left neighbour exactly the same logits,
so most steps have several exactly tied best confidences; which one wins is then decided by
``torch.topk`` on the very tensor the official code passes (its kernel does not pick the lowest
index), and only a faithful port reproduces the outputs. Our ``numerics="stable"`` option breaks ties
at the lowest position instead; the tests check that the two really do disagree on these cases.
"""

from dataclasses import replace

import pytest
import torch
from torch import nn

from diffaccel.dllm.outputs import DiffusionLMOutput
from diffaccel.dllm.sampler import MaskedDiffusionSampler, SamplingConfig, llada_generate

from .reference_samplers import ref_dream_sample, ref_llada_generate

MASK, VOCAB = 14, 16


class TieModel(nn.Module):
    """``logits[i] = A[x_i] + B[x_{i-1}] + C[#masks in the row]`` with small-integer tables: no attention,
    exact ties between masked positions with equal left neighbours, outputs that change as tokens commit."""

    def __init__(self, seed: int, dtype=torch.float32, vocab: int = VOCAB, mask: int = MASK) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        table = lambda n: torch.randint(-3, 4, (n, vocab), generator=g).to(dtype)  # noqa: E731
        self.a, self.b, self.c = table(vocab), table(vocab), table(64)
        self.c[:, mask] = -100.0  # never propose the mask token itself
        self.mask = mask
        self.config = type("Config", (), {"mask_token_id": mask, "eos_token_id": 13, "eot_token_id": 12})()
        self.anchor = nn.Parameter(torch.zeros(1, dtype=dtype))

    def forward(self, input_ids, attention_mask=None, position_ids=None, decode_step=None):
        left = torch.cat([input_ids[:, :1], input_ids[:, :-1]], dim=1)
        masks = (input_ids == self.mask).sum(1) % 64
        logits = self.a[input_ids] + self.b[left] + self.c[masks][:, None, :]
        return DiffusionLMOutput(logits=logits)


def prompts(seed: int, rows: int = 3, length: int = 5) -> torch.Tensor:
    return torch.randint(0, 12, (rows, length), generator=torch.Generator().manual_seed(seed))


LLADA_CASES = [
    dict(steps=16, gen_length=16, block_length=16),
    dict(steps=8, gen_length=16, block_length=4),
    dict(steps=16, gen_length=16, block_length=8, logits_eos_inf=True),
    dict(steps=16, gen_length=16, block_length=16, confidence_eos_eot_inf=True),
    dict(steps=8, gen_length=16, block_length=8, confidence_eos_eot_inf=True, temperature=0.5),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("options", LLADA_CASES, ids=["one-block", "blocks", "eos-inf", "eos-eot-conf", "gumbel-eot"])
def test_llada_stepwise_equals_official_generate_on_exact_ties(options, dtype):
    differs = 0
    for seed in range(6):
        model, x = TieModel(seed, dtype), prompts(seed)
        torch.manual_seed(seed)
        expected = ref_llada_generate(model, x, mask_id=MASK, eot_id=12, **options)
        torch.manual_seed(seed)
        got = llada_generate(model, x, mask_id=MASK, **options)
        assert torch.equal(got, expected), seed
        sampler = MaskedDiffusionSampler(model, family="llada", mask_id=MASK, eos_id=13, eot_id=12)
        torch.manual_seed(seed)
        config = SamplingConfig(numerics="stable", **options)
        stable = sampler.generate(x, config)
        differs += int(not torch.equal(stable, expected))
    if options.get("temperature", 0) == 0:
        assert differs > 0  # the tie cases are real: the lowest-position rule decodes differently


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy"])
@pytest.mark.parametrize("alg_temp", [None, 0.5])
def test_dream_native_sampler_equals_official_on_exact_ties(alg, alg_temp):
    differs = 0
    for seed in range(6):
        model, x = TieModel(seed, vocab=32, mask=30), prompts(seed)
        torch.manual_seed(seed)
        expected = ref_dream_sample(model, x, 12, 12, alg, mask_id=30, alg_temp=alg_temp)
        sampler = MaskedDiffusionSampler(model, family="dream", mask_id=30)
        config = SamplingConfig(
            gen_length=12, steps=12, block_length=12, alg=alg, alg_temp=alg_temp, schedule="dream_native"
        )
        torch.manual_seed(seed)
        got = sampler.generate(x, config)
        assert torch.equal(got, expected), seed
        torch.manual_seed(seed)
        differs += int(
            not torch.equal(
                sampler.generate(
                    x,
                    SamplingConfig(
                        gen_length=12,
                        steps=12,
                        block_length=12,
                        alg=alg,
                        alg_temp=alg_temp,
                        schedule="dream_native",
                        numerics="stable",
                    ),
                ),
                expected,
            )
        )
    if alg_temp is None:
        assert differs > 0


def test_dream_sampling_at_temperature_matches_official_rng_use():
    model, x = TieModel(3, vocab=32, mask=30), prompts(3)
    torch.manual_seed(11)
    expected = ref_dream_sample(model, x, 12, 12, "maskgit_plus", temperature=0.7, mask_id=30)
    torch.manual_seed(11)
    got = MaskedDiffusionSampler(model, family="dream", mask_id=30).generate(
        x,
        SamplingConfig(
            gen_length=12, steps=12, block_length=12, alg="maskgit_plus", temperature=0.7, schedule="dream_native"
        ),
    )
    assert torch.equal(got, expected)


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy"])
def test_dream_stepwise_decoding_equals_official_numerics_on_exact_ties(alg):
    """Stepwise decoding (one token per step) on Dream picks among exactly tied confidences as the official
    ``torch.topk`` call does; the transcription is run with one commit per step."""
    differs = 0
    for seed in range(6):
        model, x = TieModel(seed, vocab=32, mask=30), prompts(seed)
        expected = ref_dream_sample(model, x, 12, 12, alg, mask_id=30, one_per_step=True)
        sampler = MaskedDiffusionSampler(model, family="dream", mask_id=30)
        config = SamplingConfig(gen_length=12, steps=12, block_length=12, alg=alg)
        assert torch.equal(sampler.generate(x, config), expected), seed
        differs += int(not torch.equal(sampler.generate(x, replace(config, numerics="stable")), expected))
    assert differs > 0
