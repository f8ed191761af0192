"""The BraSyn normalisation and the lesion / healthy-tissue regions of the metric protocols.

BraSyn (the BraTS missing-MRI synthesis challenge) clips every image, prediction and reference
each by its own percentiles, to its 0.5th and 99.5th percentile and scales it to [0, 1]; the
challenge reports SSIM inside the tumour and in the healthy tissue. Lesions and tumours are where
translation hallucinates, and a whole-image value hides them, so every protocol with regions
(``mask = "region"``) reports the metrics inside two more regions of datasets with label maps:

``lesion``
    label :data:`mrbench.domain.TUMOUR_LABEL` (tumour in BraTS, white-matter lesion in the
    phantom) inside the brain mask;
``healthy``
    the brain mask minus the lesion.

An item (slice or volume) whose region is empty gets no value for it (NaN here, no row in the
metrics files), so that subjects without a lesion never average into the lesion scores.
"""

from __future__ import annotations

import numpy as np

from mrbench.domain import TUMOUR_LABEL

#: the regions besides the brain mask, in output order
REGIONS = ("lesion", "healthy")
#: BraSyn's clipping percentiles
PERCENTILES = (0.5, 99.5)


def clip_scale(x: np.ndarray) -> np.ndarray:
    """Every item of an (N, *spatial) batch clipped to its own 0.5th/99.5th percentiles (numpy's
    linear interpolation over all voxels, background included; a negative lower bound becomes
    0, as in the challenge's code) and scaled to [0, 1]; an item whose two percentiles are equal
    becomes zeros."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(x.shape[0], -1)
    lo, hi = np.percentile(flat, PERCENTILES, axis=1)
    lo = np.maximum(lo, 0.0)
    span = hi - lo
    ok = span > 0
    shape = (-1,) + (1,) * (x.ndim - 1)
    out = (np.clip(x, lo.reshape(shape), hi.reshape(shape)) - lo.reshape(shape)) / np.where(
        ok, span, 1.0
    ).reshape(shape)
    return np.where(ok.reshape(shape), out, 0.0)


def region_masks(mask: np.ndarray | None, labels: np.ndarray) -> dict[str, np.ndarray]:
    """``{"lesion": ..., "healthy": ...}`` boolean masks of an (N, *spatial) batch; the brain
    is ``mask`` (or ``labels > 0`` without one)."""
    labels = np.asarray(labels)
    brain = labels > 0 if mask is None else np.asarray(mask) > 0
    lesion = brain & (labels == TUMOUR_LABEL)
    return {"lesion": lesion, "healthy": brain & ~lesion}


def present(region: np.ndarray) -> np.ndarray:
    """(N,) True where the item's region holds a voxel."""
    return region.reshape(region.shape[0], -1).any(axis=1)


def presence(mask: np.ndarray | None, labels: np.ndarray | None) -> dict[str, np.ndarray]:
    """``{region: (N,) bool}``: which items hold each region (empty without labels)."""
    if labels is None:
        return {}
    return {name: present(r) for name, r in region_masks(mask, labels).items()}


def without_region(metric: str, where: dict[str, np.ndarray], i: int) -> bool:
    """True for a region metric of item ``i`` whose region is empty: it gets no row."""
    for name, has in where.items():
        if metric.endswith(f"_{name}"):
            return not bool(has[i])
    return False
