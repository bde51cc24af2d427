"""Diffusion language models: LLaDA and Dream ports, their reference samplers, and accelerations.

* Models: :class:`LLaDAModelLM`, :class:`DreamModel` (parameter names of the public checkpoints),
  loaded from local safetensors with :func:`load_llada` / :func:`load_dream`.
* Pipelines: :class:`LLaDAPipeline`, :class:`DreamPipeline` on one sampler core
  (:class:`MaskedDiffusionSampler`).
* Strategies: ``dkv-cache``, ``sparsed``, ``ssd``, ``fast-dllm`` via ``diffaccel.wrap`` / ``diffaccel.summary``
  (registered with the engine when this package is imported).
"""

from .api import dllm_strategies, summary, unwrap, wrap
from .config import DreamConfig, LLaDAConfig
from .dkv_cache import DKVCacheConfig
from .dream import DreamModel
from .fast_dllm import FastDLLMConfig
from .llada import LLaDAModelLM
from .loading import load_dream, load_llada
from .pipeline import DiffusionLMPipelineOutput, DreamPipeline, LLaDAPipeline
from .sampler import DecodeRecord, DecodeStep, MaskedDiffusionSampler, SamplingConfig, dream_generate, llada_generate
from .sparsed import SparseDConfig
from .ssd import SelfSpeculativeDecoding, SSDConfig

__all__ = [
    "DKVCacheConfig",
    "DecodeRecord",
    "DecodeStep",
    "DiffusionLMPipelineOutput",
    "DreamConfig",
    "DreamModel",
    "DreamPipeline",
    "FastDLLMConfig",
    "LLaDAConfig",
    "LLaDAModelLM",
    "LLaDAPipeline",
    "MaskedDiffusionSampler",
    "SSDConfig",
    "SamplingConfig",
    "SelfSpeculativeDecoding",
    "SparseDConfig",
    "dllm_strategies",
    "dream_generate",
    "llada_generate",
    "load_dream",
    "load_llada",
    "summary",
    "unwrap",
    "wrap",
]
