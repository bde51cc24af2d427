"""Tiny, randomly initialised models and pipelines for tests and `--tiny` runs.

Nothing here downloads: every component (transformers, VAEs, text encoders, tokenizers) is built
from a local config.
"""
