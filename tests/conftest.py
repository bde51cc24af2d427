"""Shared test fixtures. Nothing here downloads: every model is built from a local config."""

import logging

import pytest
import torch

logging.getLogger("diffusers").setLevel(logging.ERROR)

# Test models are tiny: with several threads, thread start-up and contention cost 100x the work
# itself on a busy 2-core machine. One thread keeps the suite fast and its results deterministic.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
