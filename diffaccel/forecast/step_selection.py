"""Choosing which denoising steps recompute a cached feature, from offline statistics.

BAC's Adaptive Caching Scheduler (Ji et al., "Block-wise Adaptive Caching for Accelerating Diffusion
Policy", arXiv 2506.13456; official code `ky-ji/HAS`, folder `BACInfer/`): given a K×K score matrix `S` where `S[i, k]`
says how well the feature computed at step `i` stands in for the feature of step `k`, choose M update
steps `0 = c_0 < c_1 < … < c_{M-1}` (step 0 always computes, nothing is cached before it) that
optimise

    J(C) = Σ_m Σ_{k = c_m}^{c_{m+1} - 1} S[c_m, k]          (c_M := K)

i.e. every step reuses the feature of the latest update at or before it. The official code solves
this exactly with a dynamic programme over (number of updates, end of the last segment) and sums each
segment naively, O(M·K³); here the segment sums come from row prefix sums, O(M·K²), same optimum.

The function is general: any strategy with a calibrated per-step score (similarity to maximise,
error to minimise) can pick its computed steps with it. `bubbling_union` is BAC's second stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch


def segment_costs(score: np.ndarray) -> np.ndarray:
    """`cost[a, b] = Σ_{t=a..b} score[a, t]` for a ≤ b (the segment [a, b] served by an update at a)."""
    score = np.asarray(score, dtype=np.float64)
    prefix = np.cumsum(score, axis=1)
    shifted = np.zeros_like(prefix)
    shifted[:, 1:] = prefix[:, :-1]
    return prefix - np.diag(shifted)[:, None]


def schedule_objective(score: np.ndarray, steps: Sequence[int]) -> float:
    """J(C) of a set of update steps (which must contain 0): the sum, over every step, of the score of
    the latest update at or before it against that step."""
    steps = sorted({int(s) for s in steps})
    if not steps or steps[0] != 0:
        raise ValueError(f"update steps must include step 0, got {steps}")
    score = np.asarray(score, dtype=np.float64)
    bounds = steps + [score.shape[0]]
    return float(sum(score[a, a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])))


def select_update_steps(score, num_updates: int, maximize: bool = True, segment_cost=None) -> list[int]:
    """The M update steps (including step 0) that optimise `J(C)` exactly.

    Args:
        score: a K×K matrix (numpy or torch); `score[i, k]` scores reusing step i's feature at step k
            (only `i ≤ k` is read).
        num_updates: M, how many steps compute; M ≥ K returns every step.
        maximize: True for similarities (BAC's cosine default), False for distances (l1, l2, mse).
        segment_cost: optional K×K matrix giving the value of a whole segment `[a, b]` served by an update
            at a directly (for costs that are not a sum of per-step scores, e.g. a forecast whose
            derivative depends on the segment's length); `score` then only fixes K.

    Ties resolve to the earliest possible previous update, so the result is deterministic.
    """
    if isinstance(score, torch.Tensor):
        score = score.detach().cpu().double().numpy()
    score = np.asarray(score, dtype=np.float64)
    if score.ndim != 2 or score.shape[0] != score.shape[1] or score.shape[0] == 0:
        raise ValueError(f"score must be a non-empty square matrix, got shape {score.shape}")
    if not isinstance(num_updates, (int, np.integer)) or num_updates < 1:
        raise ValueError(f"num_updates must be an int >= 1 (step 0 always computes), got {num_updates!r}")
    num_steps = score.shape[0]
    if num_updates >= num_steps:
        return list(range(num_steps))
    if segment_cost is not None:
        segment_cost = np.asarray(segment_cost, dtype=np.float64)
        if segment_cost.shape != score.shape:
            raise ValueError(f"segment_cost must be {score.shape}, got {segment_cost.shape}")
        cost = segment_cost if maximize else -segment_cost
    else:
        cost = segment_costs(score if maximize else -score)
    best = np.full((num_updates + 1, num_steps), -np.inf)
    parent = np.full((num_updates + 1, num_steps), -1, dtype=np.int64)
    best[1] = cost[0]  # one update (step 0) serves [0, i]
    for m in range(2, num_updates + 1):
        for i in range(m - 1, num_steps):
            # previous segment ends at j (m-1 updates cover [0, j]); the m-th update is at j + 1
            js = np.arange(m - 2, i)
            candidates = best[m - 1, js] + cost[js + 1, i]
            k = int(np.argmax(candidates))
            best[m, i] = candidates[k]
            parent[m, i] = js[k]
    steps, end = [], num_steps - 1
    for m in range(num_updates, 1, -1):
        j = int(parent[m, end])
        steps.append(j + 1)
        end = j
    return [0] + sorted(steps)


def uniform_update_steps(num_steps: int, interval: int) -> list[int]:
    """BAC's "threshold" (uniform) mode: update exactly at `k mod interval == 0`."""
    if interval < 1:
        raise ValueError(f"interval must be >= 1, got {interval}")
    return list(range(0, num_steps, interval))


def bubbling_union(
    schedules: Mapping[str, Sequence[int]],
    errors: Mapping[str, float],
    layers: Mapping[str, int],
    ffn_units: Sequence[str],
    top_n: int,
) -> dict[str, list[int]]:
    """BAC's Bubbling Union: the `top_n` units with the largest reuse error also update at every update
    step of each feed-forward unit at the same or a deeper layer.

    Why: a feed-forward sub-block recomputed from an input polluted by stale upstream caches passes the
    upstream error on almost linearly (the paper's Prop. 3.1); making the most error-prone upstream units
    refresh whenever such a downstream FFN refreshes removes those error surges. Candidates are all
    units (official code), and the same layer's FFN counts as downstream (official `>=`). The result does
    not depend on the order the units are processed in, and applying it twice equals applying it once.

    Args:
        schedules: unit → its update steps (from `select_update_steps`).
        errors: unit → reuse-error proxy (`reuse_error`).
        layers: unit → layer index.
        ffn_units: the names of the feed-forward units.
        top_n: n, how many units take the union (0 leaves every schedule unchanged).
    """
    if top_n < 0:
        raise ValueError(f"top_n must be >= 0, got {top_n}")
    missing = sorted((set(schedules) - set(errors)) | (set(schedules) - set(layers)))
    if missing:
        raise ValueError(f"units without a reuse error or layer index: {missing}")
    ranked = sorted(schedules, key=lambda u: (-errors[u], list(schedules).index(u)))[:top_n]
    out = {u: sorted(set(s)) for u, s in schedules.items()}
    for u in ranked:
        merged = set(schedules[u])
        for v in ffn_units:
            if v in schedules and layers[v] >= layers[u]:
                merged |= set(schedules[v])
        out[u] = sorted(merged)
    return out


def cosine_similarity_matrix(features: torch.Tensor) -> torch.Tensor:
    """K×K cosine similarities of the K flattened per-step features (rows of `features`, shape [K, ...])."""
    flat = features.reshape(features.shape[0], -1).double()
    unit = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return unit @ unit.T


def distance_matrix(features: torch.Tensor, metric: str) -> torch.Tensor:
    """K×K distances of the flattened per-step features: `"l1"` and `"mse"` are means over elements,
    `"l2"` the Euclidean norm of the difference."""
    flat = features.reshape(features.shape[0], -1).double()
    if metric == "l1":
        return torch.cdist(flat, flat, p=1) / flat.shape[1]
    if metric == "l2":
        return torch.cdist(flat, flat, p=2)
    if metric == "mse":
        return torch.cdist(flat, flat, p=2) ** 2 / flat.shape[1]
    raise ValueError(f"unknown distance {metric!r}; choose one of l1, l2, mse")


def pair_sums(features: torch.Tensor) -> torch.Tensor:
    """Per step pair, the sums the similarity matrices are made of: a [4, K, K] float64 tensor of dot products,
    absolute differences and squared differences of the flattened features, and (everywhere in the last
    slice) the number of elements. Sums over shards of the features are the sums of the whole, so ranks that
    each hold part of the tokens (or of the batch) can add theirs (`matrices_from_pair_sums`)."""
    flat = features.reshape(features.shape[0], -1).double()
    return torch.stack(
        [
            flat @ flat.T,
            torch.cdist(flat, flat, p=1),
            torch.cdist(flat, flat, p=2) ** 2,
            torch.full((flat.shape[0], flat.shape[0]), float(flat.shape[1]), dtype=torch.float64),
        ]
    )


def matrices_from_pair_sums(sums: torch.Tensor, metric: str) -> torch.Tensor:
    """`cosine_similarity_matrix` or `distance_matrix(metric)` from (possibly summed) `pair_sums`."""
    dots, l1, squared, numel = sums
    if metric == "cosine":
        norms = dots.diagonal().sqrt().clamp_min(1e-30)
        return dots / norms[:, None] / norms[None, :]
    if metric == "l1":
        return l1 / numel
    if metric == "l2":
        return squared.clamp_min(0).sqrt()
    if metric == "mse":
        return squared / numel
    raise ValueError(f"unknown metric {metric!r}; choose one of cosine, l1, l2, mse")


def reuse_error_from_pair_sums(sums: torch.Tensor) -> float:
    """`reuse_error` from (possibly summed) `pair_sums`."""
    k = sums.shape[-1]
    if k < 2:
        return 0.0
    return float((sums[1] / sums[3]).triu(diagonal=1).sum() / (k * (k - 1) / 2))


def reuse_error(features: torch.Tensor) -> float:
    """BAC's reuse-error proxy of one unit (official code): the mean, over step pairs t < u, of the
    element-mean absolute difference of the two steps' features."""
    k = features.shape[0]
    if k < 2:
        return 0.0
    dist = distance_matrix(features, "l1")
    return float(dist.triu(diagonal=1).sum() / (k * (k - 1) / 2))
