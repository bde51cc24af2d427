"""What makes two runs of the same weights differ in the last bits, for tests that compare them.

Weights loaded from safetensors (``from_pretrained``, ``safe_open`` with ``assign=True``) stay memory-mapped at
their offset in the file: 8-byte aligned, where a fresh allocation is 64-byte aligned. The CPU matmul and
convolution kernels take another vectorised path on unaligned operands and sum in another order, so the same
weights give results that differ in the last float32 bits. A test that means "the same computation" compares
bit for bit after :func:`in_fresh_memory`; as loaded, only up to reordered sums.
"""

from __future__ import annotations

import torch


def in_fresh_memory(obj):
    """Copy every parameter and buffer of a module, or of every module component of a pipeline, into a fresh
    (aligned) allocation, in place. Returns ``obj``."""
    modules = obj.components.values() if hasattr(obj, "components") else [obj]
    for module in modules:
        if isinstance(module, torch.nn.Module):
            for tensor in (*module.parameters(), *module.buffers()):
                tensor.data = tensor.data.clone()
    return obj


#: A few denoising steps of a tiny model whose kernels sum in another order differ by a few float32 ulps per
#: kernel, amplified by the steps: 2**-16 at 1.0 is 256 ulps, and 1/256 of one 8-bit level of a saved image.
REORDERED_SUMS_ATOL = 2.0**-16
