"""Voxel grids compared, not assumed: a prediction is scored only on its target's grid.

Two volumes lie on the same grid when their shapes are equal and their affines (voxel index ->
scanner mm) agree within :data:`AFFINE_TOL_MM` in every entry. A volume that describes the same
grid in another axis order or direction (e.g. saved flipped left-right with the affine to match)
is reoriented onto the reference with nibabel's orientation tools; anything else (a shift, other
voxel sizes, another field of view) is refused with a one-line error naming both files, since
comparing such arrays voxel by voxel scores anatomy against other anatomy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from nibabel import orientations

from mrbench.io import InputError

#: largest difference allowed between two affines' entries (mm, or mm per voxel): far below any
#: voxel size, far above the float32 rounding of NIfTI headers
AFFINE_TOL_MM = 1e-3


def same_grid(
    shape_a: tuple[int, ...], affine_a: np.ndarray, shape_b: tuple[int, ...], affine_b: np.ndarray
) -> bool:
    """True when both shapes are equal and the affines agree within :data:`AFFINE_TOL_MM`."""
    return tuple(shape_a) == tuple(shape_b) and bool(
        np.allclose(np.asarray(affine_a), np.asarray(affine_b), rtol=0, atol=AFFINE_TOL_MM)
    )


def onto_grid(
    data: np.ndarray,
    affine: np.ndarray,
    ref_shape: tuple[int, ...],
    ref_affine: np.ndarray,
    name: str | Path,
    ref_name: str | Path,
) -> np.ndarray:
    """``data`` (on ``affine``) as an array on the reference grid: unchanged when the grids are
    the same, reoriented when they are the same grid in another orientation; otherwise an
    :class:`~mrbench.io.InputError` naming ``name`` and ``ref_name``."""
    affine = np.asarray(affine, dtype=np.float64)
    ref_affine = np.asarray(ref_affine, dtype=np.float64)
    if same_grid(data.shape, affine, ref_shape, ref_affine):
        return data
    if data.ndim == 3 and len(ref_shape) == 3:
        transform = orientations.ornt_transform(
            orientations.io_orientation(affine), orientations.io_orientation(ref_affine)
        )
        moved = orientations.apply_orientation(data, transform)
        moved_affine = affine @ orientations.inv_ornt_aff(transform, data.shape)
        if same_grid(moved.shape, moved_affine, ref_shape, ref_affine):
            return np.ascontiguousarray(moved)
    diff = float(np.abs(affine - ref_affine).max()) if affine.shape == ref_affine.shape else np.inf
    raise InputError(
        f"{name}: grid differs from {ref_name} (shape {tuple(data.shape)} vs {tuple(ref_shape)}, "
        f"affine differs by up to {diff:.4g} mm, tolerance {AFFINE_TOL_MM} mm, and no "
        "reorientation matches); resample it onto the same grid first"
    )
