"""Every zoo model under every strategy gives the outputs recorded before the package was reorganised.

The fingerprints in `tests/recorded/outputs.json` were recorded at the commit before the restructuring
(`python -m tests.recorded.outputs`, re-recorded at f0120d8 with the CPU's feature flags in the environment);
moving code must not change a single bit. On another torch build, or a CPU with other instruction-set
extensions, the kernels sum in another order, so there the sums are compared to a tolerance instead.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.recorded import outputs

RECORDED = json.loads(outputs.RECORD.read_text())
SAME_ENVIRONMENT = RECORDED["environment"] == outputs.environment()


@pytest.fixture(scope="module")
def current():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return outputs.compute()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("key", sorted(RECORDED["results"]))
def test_output_matches_the_recording(current, key):
    expected, got = RECORDED["results"][key], current[key]
    if "generated" in expected:
        assert got["generated"] == expected["generated"]
        assert got["texts"] == expected["texts"]
        if SAME_ENVIRONMENT:
            assert got["logits_sha256"] == expected["logits_sha256"]
        else:
            assert got["logits_sum"] == pytest.approx(expected["logits_sum"], rel=1e-4)
        return
    assert got["shape"] == expected["shape"]
    if SAME_ENVIRONMENT:
        assert got["sha256"] == expected["sha256"], (got["sum"], expected["sum"])
    else:
        assert got["sum"] == pytest.approx(expected["sum"], rel=1e-4)
        assert got["head"] == pytest.approx(expected["head"], abs=1e-4)


def test_recording_covers_every_zoo_model_and_strategy():
    import diffaccel
    from diffaccel import zoo

    models = {key.split("/")[0] for key in RECORDED["results"]}
    assert models <= set(zoo.names())
    assert {"flux-photos", "dit-digits", "unet-photos", "wan-clips", "llada-addition"} <= models
    labels = {key.split("/")[1] for key in RECORDED["results"]}
    assert {"taylorseer", "hyca", "taocache", "dkv-cache", "sparsed", "ssd", "fast-dllm"} <= labels
    assert len(diffaccel.strategies()) >= 7
