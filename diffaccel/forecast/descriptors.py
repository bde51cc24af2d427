"""HyCa's per-channel temporal descriptors and their clustering (HyCa, arXiv 2510.04188; formulas ours).

The paper names the indicators (first- and second-order difference, energy, jerk ratio, curvature
ratio, spectral flatness) but not their formulas; these are OURS (docs/methods.md). Input: a probe
trajectory `y` of shape [steps, channels], each entry a channel's mean over batch and tokens.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def channel_descriptors(y: np.ndarray) -> np.ndarray:
    """Descriptors per channel, shape [channels, 6]: mean|∇y|, mean|∇²y|, mean y², jerk ratio
    mean|∇³y|/mean|∇y|, curvature ratio mean|∇²y|/mean|∇y|, spectral flatness of ∇y."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] < 4:
        raise ValueError(f"need a trajectory of at least 4 steps, shape [steps, channels]; got {y.shape}")
    d1, d2, d3 = (np.diff(y, n=k, axis=0) for k in (1, 2, 3))
    m1, m2, m3 = (np.abs(d).mean(axis=0) for d in (d1, d2, d3))
    energy = (y**2).mean(axis=0)
    power = np.abs(np.fft.rfft(d1, axis=0)) ** 2 + _EPS
    flatness = np.exp(np.log(power).mean(axis=0)) / power.mean(axis=0)
    return np.stack([m1, m2, energy, m3 / (m1 + _EPS), m2 / (m1 + _EPS), flatness], axis=1)


def cluster_channels(descriptors: np.ndarray, num_clusters: int, seed: int = 0) -> np.ndarray:
    """k-means++ on z-scored descriptors (fixed seed, several initialisations); labels per channel.

    Labels are renumbered by first appearance so the same grouping always gets the same numbers.
    """
    from sklearn.cluster import KMeans

    channels = descriptors.shape[0]
    k = min(num_clusters, channels)
    if k <= 1:
        return np.zeros(channels, dtype=np.int64)
    z = (descriptors - descriptors.mean(axis=0)) / (descriptors.std(axis=0) + _EPS)
    distinct = np.unique(np.round(z, 9), axis=0).shape[0]
    k = min(k, distinct)
    if k <= 1:
        return np.zeros(channels, dtype=np.int64)
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(z)
    order = {old: new for new, old in enumerate(dict.fromkeys(labels.tolist()))}
    return np.array([order[label] for label in labels], dtype=np.int64)
