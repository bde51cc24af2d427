"""Tiny dLLM models for the tests: random weights, float64 where exact equality is asserted."""

import warnings

import pytest
import torch

import diffaccel
from diffaccel.dllm.config import DreamConfig, LLaDAConfig
from diffaccel.dllm.dream import DreamModel
from diffaccel.dllm.llada import LLaDAModelLM

LLADA_MASK, DREAM_MASK = 14, 30

warnings.filterwarnings("ignore", message=".*flex_attention.*")


def tiny_llada(
    n_layers: int = 2, seed: int = 0, dtype=torch.float64, n_kv_heads: int = 4, rope: bool = True
) -> LLaDAModelLM:
    """``rope=False``: LLaDA's learned absolute positions (64 of them) instead of RoPE."""
    torch.manual_seed(seed)
    config = LLaDAConfig(
        d_model=32,
        n_heads=4,
        n_kv_heads=n_kv_heads,
        n_layers=n_layers,
        mlp_hidden_size=64,
        vocab_size=16,
        embedding_size=16,
        rope_theta=10000.0,
        rope=rope,
        max_sequence_length=4096 if rope else 64,
        mask_token_id=LLADA_MASK,
        eos_token_id=13,
        bos_token_id=12,
        eot_token_id=None,
        pad_token_id=13,
    )
    model = LLaDAModelLM(config).eval().to(dtype)
    # sharper random logits make confidence orders less uniform (more varied decode orders)
    with torch.no_grad():
        model.model.transformer["ff_out"].weight.mul_(8.0)
    return model


def tiny_dream(n_layers: int = 2, seed: int = 0, dtype=torch.float64) -> DreamModel:
    torch.manual_seed(seed)
    config = DreamConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=32,
        rope_theta=10000.0,
        mask_token_id=DREAM_MASK,
        pad_token_id=31,
        bos_token_id=31,
        eos_token_id=31,
    )
    model = DreamModel(config).eval().to(dtype)
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model


def random_prompts(count: int, length: int, vocab: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (count, length), generator=torch.Generator().manual_seed(seed))


def wrapped_run(pipe, strategy, prompts, **sampling):
    """Generated tokens of ``pipe`` wrapped with ``strategy`` (unwrapped again afterwards)."""
    diffaccel.wrap(pipe, strategy)
    try:
        return pipe(input_ids=prompts, **sampling).generated
    finally:
        diffaccel.unwrap(pipe)


@pytest.fixture(scope="session")
def zoo_pipe():
    from diffaccel.dllm.zoo import load_llada_addition

    return load_llada_addition()
