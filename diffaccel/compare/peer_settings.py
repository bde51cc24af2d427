"""Each peer at its own best setting, per zoo model, step count and PSNR target: the peer rows of the
default `diffaccel compare`.

A peer's default can skip almost nothing on a small model (diffusers' FBCache at 0.05 computes nearly
every step), which makes it a row that says nothing about the method. So each peer's own knob was swept
(`eval/peer_sweep.py`: FBCache's threshold, MagCache's threshold and skip limit, diffusers' TaylorSeer
interval and order) and, per target, the setting with the highest CPU-time speed-up whose mean PSNR over
seeds 100-101 reached the target plus 0.5 dB with no seed below the target (the rule `diffaccel.tune`
applies to its own candidates) is kept. Seeds 100-101 are never scored by a default comparison. A peer with
no setting meeting a target has no row for it. PAB and FasterCache keep one state per attention module
rather than per guidance branch, so they are unsupported on the zoo's two-call guidance and stay in the
table at their defaults, where the reason is shown.
"""

from __future__ import annotations

#: (model, steps) -> PSNR target -> peer specs (the fastest setting of each peer meeting the target)
PEER_BEST: dict[tuple[str, int], dict[float, tuple[str, ...]]] = {
    ("flux-photos", 20): {
        35.0: ("diffusers:fbc:threshold=0.15", "diffusers:magcache:max_skip_steps=6,threshold=0.24"),
        30.0: (
            "diffusers:fbc:threshold=0.2",
            "diffusers:magcache:max_skip_steps=6,threshold=0.5",
            "diffusers:taylorseer:cache_interval=5,taylor_factors_dtype=float32",
        ),
    },
}

#: (model, steps) -> the command that measured the sweep (records under docs/compare/runs/)
SOURCES: dict[tuple[str, int], str] = {
    ("flux-photos", 20): "python eval/peer_sweep.py --model flux-photos --steps 20 "
    "--out docs/compare/runs/flux-photos-20-peer-sweep",
}


def best_peer_specs(model: str, steps: int) -> list[str] | None:
    """The peer specs for this model and step count (35 dB settings first, duplicates once), or None when
    no sweep was run for it."""
    table = PEER_BEST.get((model, steps))
    if table is None:
        return None
    out: list[str] = []
    for target in sorted(table, reverse=True):
        out += [spec for spec in table[target] if spec not in out]
    return out
