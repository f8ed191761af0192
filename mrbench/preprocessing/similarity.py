"""Similarity of two contrasts inside a mask: normalised mutual information, gradient NCC."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def entropy(q: np.ndarray) -> float:
    """Shannon entropy (nats) of a probability array; zero entries are skipped."""
    q = q[q > 0]
    return float(-(q * np.log(q)).sum())


def nmi(a: np.ndarray, b: np.ndarray, mask: np.ndarray, bins: int = 64) -> float:
    """Normalised mutual information (H(A)+H(B))/H(A,B) of two volumes inside ``mask``."""
    x, y = a[mask > 0].astype(np.float64), b[mask > 0].astype(np.float64)
    if x.size < 10:
        return float("nan")
    rx = np.percentile(x, [0.5, 99.5])
    ry = np.percentile(y, [0.5, 99.5])
    hist, _, _ = np.histogram2d(np.clip(x, *rx), np.clip(y, *ry), bins=bins, range=[rx, ry])
    p = hist / hist.sum()
    px, py = p.sum(1), p.sum(0)
    return (entropy(px) + entropy(py)) / entropy(p.ravel())


def gradient_ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray, spacing: np.ndarray) -> float:
    """NCC of gradient magnitudes inside ``mask``: contrast-independent edge agreement."""

    def gmag(v: np.ndarray) -> np.ndarray:
        v = ndimage.gaussian_filter(v.astype(np.float32), 1.0 / np.asarray(spacing))
        g = np.gradient(v, *spacing)
        return np.sqrt(sum(gi**2 for gi in g))

    ga, gb = gmag(a)[mask > 0], gmag(b)[mask > 0]
    ga, gb = ga - ga.mean(), gb - gb.mean()
    den = np.sqrt((ga**2).sum() * (gb**2).sum())
    return float((ga * gb).sum() / den) if den > 0 else float("nan")


def quantise(v: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """Bin index (0 .. ``bins`` - 1) of each value on ``bins`` equal bins over [lo, hi]."""
    q = np.floor((v - lo) / max(hi - lo, 1e-6) * bins).astype(np.int64)
    return np.clip(q, 0, bins - 1)


def nmi_from_bins(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    """Normalised mutual information of two arrays of bin indices (see :func:`quantise`)."""
    joint = np.bincount(a * bins + b, minlength=bins * bins).astype(np.float64)
    p = joint / joint.sum()
    pa, pb = p.reshape(bins, bins).sum(1), p.reshape(bins, bins).sum(0)
    return (entropy(pa) + entropy(pb)) / max(entropy(p), 1e-12)
