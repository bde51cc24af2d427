"""Shared test fixtures. Nothing here downloads: every model is built from a local config."""

import logging
from importlib import metadata

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


#: The packages whose releases change what the suite computes; their versions head every test run, so a green
#: run records what it was green with (the README names the tested range).
REPORTED_PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "huggingface_hub",
    "safetensors",
    "accelerate",
    "tokenizers",
    "numpy",
    "scipy",
    "scikit-image",
    "scikit-learn",
)


def _versions() -> str:
    versions = []
    for name in REPORTED_PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return "versions: " + ", ".join(versions)


def pytest_report_header(config):
    return _versions()


def pytest_terminal_summary(terminalreporter):
    """Also at the end, where ``-q`` (which hides the header) still prints it."""
    terminalreporter.write_line(_versions())
