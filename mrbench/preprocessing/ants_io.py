"""ANTs access for preprocessing: nibabel <-> antspyx images, grids, transforms.

nibabel arrays are RAS; ANTs images live in LPS physical space. :func:`to_ants` and
:func:`from_ants` convert between a canonical (RAS, no shear) array + affine and an ANTs image.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

_LPS = np.diag([-1.0, -1.0, 1.0])


def load_ants():
    """The ``ants`` module, imported on first use with ITK limited to 2 threads by default."""
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")
    import ants

    return ants


def to_ants(data: np.ndarray, affine: np.ndarray):
    """A canonical (RAS, no shear) nibabel array + affine as an ANTs image (LPS physical space)."""
    ants = load_ants()
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    direction = _LPS @ (affine[:3, :3] / zooms)
    origin = _LPS @ affine[:3, 3]
    return ants.from_numpy(
        np.ascontiguousarray(data, dtype=np.float32),
        origin=tuple(float(v) for v in origin),
        spacing=tuple(float(v) for v in zooms),
        direction=direction,
    )


def from_ants(img) -> tuple[np.ndarray, np.ndarray]:
    """Array and RAS affine of an ANTs image."""
    spacing = np.asarray(img.spacing, dtype=float)
    direction = _LPS @ np.asarray(img.direction, dtype=float)
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = _LPS @ np.asarray(img.origin, dtype=float)
    return img.numpy(), affine


def canonical(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """Reorient to the closest canonical (RAS+) orientation; float32 array and affine."""
    can = nib.as_closest_canonical(img)
    return np.asarray(can.dataobj, dtype=np.float32), can.affine.copy()


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((affine[:3, :3] ** 2).sum(axis=0))


def resample_iso(img, spacing: float):
    return load_ants().resample_image(img, (spacing,) * 3, use_voxels=False, interp_type=0)


def translation_file(offset_ras: np.ndarray, folder: Path, name: str = "init.mat") -> str:
    """An ITK translation mapping fixed points to moving points (RAS offset), as a .mat file."""
    ants = load_ants()
    tx = ants.create_ants_transform(
        transform_type="AffineTransform", dimension=3, translation=tuple(_LPS @ offset_ras)
    )
    path = str(folder / name)
    ants.write_transform(tx, path)
    return path
