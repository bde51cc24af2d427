"""Dream-architecture training and strategy support, independent of the committed weights: the Dream SFT loss
(shifted logits) against a direct computation, the trainer's ``--arch dream``, and which dLLM strategies
refuse a Dream pipeline at wrap."""

import pytest
import torch
from torch import nn

import diffaccel
from diffaccel import UnsupportedFamilyError
from diffaccel.dllm import DreamPipeline
from diffaccel.dllm.dkv_cache import DKVCacheConfig
from diffaccel.dllm.fast_dllm import FastDLLMConfig
from diffaccel.dllm.outputs import DiffusionLMOutput
from diffaccel.dllm.ssd import SSDConfig
from diffaccel.dllm.train_addition import main as train_main
from diffaccel.dllm.training import sft_loss
from diffaccel.dllm.zoo import load_dream_addition
from diffaccel.zoo.weights_io import sha256_of

from .conftest import random_prompts, tiny_dream, wrapped_run


class TableModel(nn.Module):
    """Raw logits ``A[x_i] + P[i]``: every position's output depends on its own token and its index only,
    so a wrong shift or a wrong slice gives another number."""

    def __init__(self, length: int, vocab: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = torch.randn(vocab, vocab, generator=g, dtype=torch.float64)
        self.p = torch.randn(length, vocab, generator=g, dtype=torch.float64)

    def forward(self, input_ids, attention_mask=None, position_ids=None, decode_step=None):
        return DiffusionLMOutput(logits=self.a[input_ids] + self.p[: input_ids.shape[1]])


def test_dream_sft_loss_equals_a_direct_computation_with_shifted_targets():
    mask, vocab, batch, prompt_len, gen = 14, 16, 3, 4, 5
    prompts = torch.randint(0, 12, (batch, prompt_len), generator=torch.Generator().manual_seed(1))
    answers = torch.randint(0, 12, (batch, gen), generator=torch.Generator().manual_seed(2))
    model = TableModel(prompt_len + gen, vocab)
    loss = sft_loss(model, prompts, answers, torch.Generator().manual_seed(5), mask, family="dream")

    # the same draws, then Dream's SFT loss written out token by token: t per row, answer token j masked
    # when u < t, its prediction read from the raw logit one position to the left, weight 1/t, mean over masks
    g = torch.Generator().manual_seed(5)
    t = torch.rand(batch, 1, generator=g)
    masked = torch.rand(batch, gen, generator=g) < t
    total, count = 0.0, 0
    for b in range(batch):
        noisy = torch.cat([prompts[b], torch.where(masked[b], torch.tensor(mask), answers[b])])
        raw = model(noisy[None]).logits[0]
        for j in range(gen):
            if masked[b, j]:
                position = prompt_len + j
                ce = -torch.log_softmax(raw[position - 1], dim=-1)[answers[b, j]]
                total += float(ce) / float(t[b, 0])
                count += 1
    assert count > 0
    assert loss.item() == pytest.approx(total / count, rel=1e-12)
    unshifted = sft_loss(model, prompts, answers, torch.Generator().manual_seed(5), mask, family="llada")
    assert abs(unshifted.item() - loss.item()) > 1e-3  # the shift (and weighting) is what makes the difference


def test_dream_sft_loss_is_zero_for_a_perfect_next_token_model():
    """A model whose raw output at i is certain of the clean token at i+1 has zero Dream loss."""
    prompts = torch.tensor([[12, 1, 2, 10, 3, 4, 11]])
    answers = torch.tensor([[0, 0, 3, 7, 13]])
    clean = torch.cat([prompts, answers], dim=1)

    class NextToken(nn.Module):
        def forward(self, input_ids, **_):
            logits = torch.full((1, clean.shape[1], 16), -1e4, dtype=torch.float64)
            logits[0, torch.arange(clean.shape[1] - 1), clean[0, 1:]] = 0.0
            return DiffusionLMOutput(logits=logits)

    loss = sft_loss(NextToken(), prompts, answers, torch.Generator().manual_seed(0), 14, family="dream")
    assert loss.item() == 0.0
    with pytest.raises(ValueError, match="family"):
        sft_loss(NextToken(), prompts, answers, torch.Generator().manual_seed(0), 14, family="qwen")


@pytest.mark.parametrize(
    "strategy, message",
    [
        (DKVCacheConfig(variant="greedy"), "LLaDA-style models only"),
        ([SSDConfig(), FastDLLMConfig(threshold=None, cache="dual")], "LLaDA-style models only"),
        ([SSDConfig(), FastDLLMConfig(threshold=None, cache="prefix")], "LLaDA-style models only"),
    ],
    ids=["dkv-greedy", "ssd+dual-cache", "ssd+prefix-cache"],
)
def test_unsupported_strategies_refuse_a_dream_pipeline_at_wrap(strategy, message):
    pipe = DreamPipeline(tiny_dream(1))
    with pytest.raises(UnsupportedFamilyError, match=message):
        diffaccel.wrap(pipe, strategy)
    assert not pipe.model._diffusers_hook.hooks  # nothing left attached
    diffaccel.wrap(pipe, DKVCacheConfig())  # and the pipeline can be wrapped again
    diffaccel.unwrap(pipe)


def test_dream_ssd_with_fast_dllm_without_cache_stays_stepwise():
    """The supported composition on Dream: ssd with fast-dllm's schedule-free, cache-free setting."""
    pipe, prompts = DreamPipeline(tiny_dream(2)), random_prompts(6, 5, 29)
    options = dict(gen_length=8, steps=8, block_length=4, schedule="linear")
    expected = pipe(input_ids=prompts, **options).generated
    got = wrapped_run(
        pipe, [SSDConfig(draft_length=3), FastDLLMConfig(threshold=None, cache="none")], prompts, **options
    )
    assert torch.equal(got, expected)


def test_training_script_trains_a_dream_twin(tmp_path):
    tiny = ["--steps", "3", "--eval-count", "4", "--d-model", "16", "--n-layers", "1", "--n-heads", "2"]
    tiny += ["--n-kv-heads", "1", "--ff", "32", "--batch-size", "8", "--warmup", "1", "--output", str(tmp_path)]
    manifest = train_main(["--arch", "dream", *tiny])
    assert manifest["name"] == "dream-addition" and manifest["hyperparameters"]["arch"] == "dream"
    assert manifest["sha256"]["model.safetensors"] == sha256_of(tmp_path / "model.safetensors")
    pipe = load_dream_addition(folder=tmp_path)
    assert (pipe.model.config.hidden_size, pipe.model.config.num_key_value_heads) == (16, 1)
    assert torch.isfinite(torch.tensor(manifest["final_loss"]))
    with pytest.raises(SystemExit):  # key/value heads are a Dream option
        train_main(["--arch", "llada", "--n-kv-heads", "1", "--output", str(tmp_path / "x")])
