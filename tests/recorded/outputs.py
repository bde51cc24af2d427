"""Deterministic fingerprints of every zoo model under every strategy, recorded before a refactor.

`python -m tests.recorded.outputs` rewrites `outputs.json`; `test_outputs_recorded.py` compares against it.
Runs are tiny (few steps, two classes / two prompts) so the whole set costs seconds.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import torch

RECORD = Path(__file__).with_name("outputs.json")

#: (model, strategy spec or list of specs or None, call options); strategies use small intervals so that
#: forecasts happen within the few steps.
IMAGE_MODELS = ["flux-photos", "dit-digits", "unet-photos", "wan-clips"]
IMAGE_STRATEGIES = {
    "none": None,
    "taylorseer": "taylorseer:interval=2,warmup=1",
    "hyca": "hyca:interval=2,warmup=1,probe_steps=4",
    "taocache": "taocache:start_frac=0.3,error_threshold=1.0",
    "taylorseer+taocache": ["taylorseer:interval=2,warmup=1", "taocache:start_frac=0.5,error_threshold=1.0"],
}
DLLM_STRATEGIES = {
    "none": None,
    "dkv-cache": "dkv-cache",
    "sparsed": "sparsed",
    "ssd": "ssd",
    "fast-dllm": "fast-dllm",
}


def fingerprint(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    flat = array.reshape(-1).astype(np.float64)
    return {
        "shape": list(array.shape),
        "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
        "sum": float(flat.sum()),
        "head": [float(v) for v in flat[:4]],
    }


def run_image(pipe, spec, runs: int = 2) -> dict:
    import diffaccel

    if spec is not None:
        diffaccel.wrap(pipe, spec)
    try:
        outs = []
        for seed in range(runs):  # two runs: the second reuses whatever the first left (state must reset)
            out = pipe(
                class_labels=[1],
                num_inference_steps=6,
                generator=torch.Generator("cpu").manual_seed(seed),
                output_type="np",
            )
            arr = out.frames if getattr(out, "frames", None) is not None else out.images
            outs.append(np.asarray(arr))
        return fingerprint(np.stack(outs))
    finally:
        if spec is not None:
            diffaccel.unwrap(pipe)


def run_dllm(pipe, spec) -> dict:
    """Tokens alone hardly move on this easy task, so every model output (logits) of the run is hashed too."""
    import diffaccel

    if spec is not None:
        diffaccel.wrap(pipe, spec)
        # the caches and SSD ask the model for the current block's logits only (an exact saving, tested in
        # tests/dllm/test_logits_window.py); the recording holds full-length logits, so they are asked for here
        pipe.sampler.logits_window = False
    digest = hashlib.sha256()
    total = [0.0]

    def record(module, args, output):
        logits = output.logits if hasattr(output, "logits") else output
        array = logits.detach().float().contiguous().numpy()
        digest.update(array.tobytes())
        total[0] += float(array.astype(np.float64).sum())

    handle = pipe.model.register_forward_hook(record)
    try:
        out = pipe(["1234+5678", "0999+0001", "4321+1111"])
        return {
            "generated": out.generated.tolist(),
            "texts": out.texts,
            "logits_sha256": digest.hexdigest(),
            "logits_sum": total[0],
        }
    finally:
        handle.remove()
        if spec is not None:
            diffaccel.unwrap(pipe)


def compute() -> dict:
    from diffaccel import zoo

    torch.manual_seed(0)
    results: dict = {}
    for model in IMAGE_MODELS:
        pipe = zoo.load(model)
        pipe.set_progress_bar_config(disable=True)
        for label, spec in IMAGE_STRATEGIES.items():
            results[f"{model}/{label}"] = run_image(pipe, spec)
    pipe = zoo.load("llada-addition")
    for label, spec in DLLM_STRATEGIES.items():
        results[f"llada-addition/{label}"] = run_dllm(pipe, spec)
    return results


def _cpu_flags_digest() -> str:
    """A digest of the CPU feature flags the kernels dispatch on ("" where /proc/cpuinfo does not exist)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return platform.processor()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith(("flags", "Features")):
            flags = " ".join(sorted(line.split(":", 1)[1].split()))
            return hashlib.sha256(flags.encode()).hexdigest()[:16]
    return ""


def environment() -> dict:
    return {
        "torch": torch.__version__,
        "machine": platform.machine(),
        # The CPU's instruction-set extensions pick the kernels (oneDNN and ATen dispatch on them), and with
        # them the order of float sums: two x86_64 machines with the same torch give different last bits.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags_sha256": _cpu_flags_digest(),
        "numpy": np.__version__,
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    RECORD.write_text(json.dumps({"environment": environment(), "results": compute()}, indent=1) + "\n")
    print(f"wrote {RECORD}")
