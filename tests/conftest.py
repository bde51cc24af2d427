"""Shared test fixtures. Nothing here downloads: every model is built from a local config."""

import logging

import pytest
import torch

logging.getLogger("diffusers").setLevel(logging.ERROR)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
