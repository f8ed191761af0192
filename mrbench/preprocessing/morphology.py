"""Binary morphology in millimetres: dilation/erosion, components, holes, bounding box."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """3D hole filling, then per axial slice (closes ventricles open at a cut), on the bbox."""
    out = np.zeros(mask.shape, dtype=bool)
    box = bbox_slices(mask, 1)
    sub = ndimage.binary_fill_holes(mask[box])
    for k in range(sub.shape[2]):
        sub[..., k] = ndimage.binary_fill_holes(sub[..., k])
    out[box] = sub
    return out


def dilate_mm(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Dilation by a box of half-width ``radius_mm`` (separable, fast on large volumes)."""
    size = tuple(2 * int(np.ceil(radius_mm / s)) + 1 for s in spacing)
    return ndimage.maximum_filter(mask.astype(np.uint8), size=size) > 0


def erode_mm(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Erosion by a box of half-width ``radius_mm``."""
    size = tuple(2 * int(np.ceil(radius_mm / s)) + 1 for s in spacing)
    return ndimage.minimum_filter(mask.astype(np.uint8), size=size, mode="constant") > 0


def bbox_slices(mask: np.ndarray, margin: int = 2) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    if idx.size == 0:
        return tuple(slice(0, n) for n in mask.shape)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
