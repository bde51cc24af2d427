"""The Fast-dLLM peer runs and counts forwards as the official loops do (NVlabs/Fast-dLLM v1)."""

import pytest
import torch

import diffaccel
from diffaccel.dllm import LLaDAPipeline

from .conftest import LLADA_MASK, random_prompts, tiny_llada
from .reference_samplers import ref_fast_dllm_generate


def peer_run(pipe, ids, gen_length, block_length, **options):
    diffaccel.dllm.wrap(pipe, "fast-dllm", **options)
    try:
        out = pipe(input_ids=ids, gen_length=gen_length, steps=gen_length, block_length=block_length)
        return out.sequences, out.record.forward_calls
    finally:
        diffaccel.unwrap(pipe)


@pytest.mark.parametrize(
    "cache, skip, expected",
    [
        ("prefix", False, [2, 8]),
        ("dual", False, [2, 8]),  # official: block-start forward + one more per block
        ("prefix", True, [1, 4]),
        ("dual", True, [1, 4]),  # ours: the idle forward skipped
        ("none", False, [1, 4]),  # no cache: the loop stops when the block is done
    ],
)
def test_forward_count_when_every_block_completes_at_its_first_forward(cache, skip, expected):
    """Hand-traced: threshold 1e-6 (below any confidence) commits every masked position of a block at its first forward. The
    official cached loop (``i = 1; while True: nfe += 1; forward; ...; if block done: break``) still runs
    one forward after it, so answer 8 / block 8 costs 2 forwards and answer 16 / block 4 costs 4 x 2."""
    pipe, ids = LLaDAPipeline(tiny_llada(1)), random_prompts(1, 6, 12)
    counts = [
        peer_run(pipe, ids, gen, block, threshold=1e-6, cache=cache, skip_idle_forward=skip)[1]
        for gen, block in [(8, 8), (16, 4)]
    ]
    assert counts == expected


def test_idle_forward_changes_no_token():
    pipe, ids = LLaDAPipeline(tiny_llada(1)), random_prompts(1, 6, 12)
    official, _ = peer_run(pipe, ids, 16, 4, threshold=1e-6, cache="prefix")
    ours, _ = peer_run(pipe, ids, 16, 4, threshold=1e-6, cache="prefix", skip_idle_forward=True)
    assert torch.equal(official, ours)


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
@pytest.mark.parametrize("threshold", [0.2, 0.5, None])
def test_peer_matches_the_official_loop_tokens_and_forwards(cache, threshold):
    """On a one-layer model the caches are exact, so tokens and forward counts must equal a transcription
    of the official ``generate`` / ``generate_with_prefix_cache`` / ``generate_with_dual_cache``."""
    model = tiny_llada(1)
    pipe = LLaDAPipeline(model)
    for seed in range(3):
        ids = random_prompts(1, 6, 12, seed=seed)
        expected, nfe = ref_fast_dllm_generate(
            model, ids, 16, 8, 16, cache=cache, threshold=threshold, mask_id=LLADA_MASK
        )
        got, forwards = peer_run(pipe, ids, 16, 8, threshold=threshold, cache=cache)
        assert torch.equal(got, expected), seed
        assert forwards == nfe, seed
