"""The grid a model was trained on, and a user's volume checked against it.

A model translates axial slices of the orientation and voxel size it saw in training: slices
along another axis, or at half the voxel size, look like nothing it learned and give a
plausible-looking but wrong volume. So ``model.pt`` records the training grid
(:func:`training_grid`: the orientation and median voxel size of the training subjects) and
``mrbench translate --input`` brings the input onto it before translating
(:func:`onto_model_grid`):

- orientation: axis permutations and flips are lossless, so an input in another orientation is
  reoriented to the training orientation, translated, and the prediction reoriented back: the
  output is always on the input's grid with the input's affine;
- voxel size: resampling would change what the model sees and what the output means, so an
  input whose voxel size differs from the training one by more than :data:`SPACING_RTOL` is
  refused with one line naming both sizes and the command that resamples it;
- mask: only on the input's own grid (same shape and affine), else refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from mrbench.io import InputError

#: relative difference of voxel sizes still taken as the same grid
SPACING_RTOL = 0.05
#: orientation assumed for model files that record no training grid (the preprocessing writes
#: every volume in the closest canonical orientation)
DEFAULT_ORIENTATION = ("R", "A", "S")


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))


def training_grid(affines: list[Any]) -> dict[str, Any]:
    """Orientation (axis codes of the first subject) and median voxel size (mm) of the training
    subjects' grids, as recorded in ``model.pt`` (``meta["grid"]``)."""
    affs = [np.asarray(a, dtype=float) for a in affines]
    if not affs:
        return {}
    spacing = np.median(np.stack([voxel_sizes(a) for a in affs]), axis=0)
    return {
        "orientation": "".join(nib.aff2axcodes(affs[0])),
        "spacing_mm": [round(float(s), 4) for s in spacing],
    }


def _fmt(spacing: Any) -> str:
    return "x".join(f"{float(s):.3g}" for s in spacing)


def onto_model_grid(
    img: nib.Nifti1Image,
    grid: dict[str, Any] | None,
    input_path: str | Path,
    mask_img: nib.Nifti1Image | None = None,
    mask_path: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray | None, Callable[[np.ndarray], np.ndarray], list[str]]:
    """The input (and mask) as arrays in the training orientation, a function taking a
    prediction back onto the input's grid, and notes for the log; one-line errors for a voxel
    size the model was not trained on or a mask on another grid."""
    data = np.asarray(img.dataobj, dtype=np.float32)
    if mask_img is not None:
        same = mask_img.shape == img.shape and np.allclose(mask_img.affine, img.affine, atol=1e-3)
        if not same:
            raise InputError(
                f"{mask_path}: not on the grid of {input_path} (shape {mask_img.shape} vs "
                f"{img.shape}, or another affine); give the mask on the input's grid"
            )
    notes: list[str] = []
    codes = tuple((grid or {}).get("orientation") or DEFAULT_ORIENTATION)
    source = nib.io_orientation(img.affine)
    to_model = nib.orientations.ornt_transform(source, nib.orientations.axcodes2ornt(codes))
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(codes), source)
    have = "".join(nib.aff2axcodes(img.affine))
    if have != "".join(codes):
        notes.append(
            f"{input_path}: orientation {have} reoriented to the training orientation "
            f"{''.join(codes)} for translation, and the prediction back to {have}"
        )
    spacing = np.empty(3)  # in the model's axis order
    spacing[to_model[:, 0].astype(int)] = voxel_sizes(img.affine)
    want = (grid or {}).get("spacing_mm")
    if want is None:
        notes.append(f"{input_path}: the model file records no training voxel size; not checked")
    elif not np.allclose(spacing, want, rtol=SPACING_RTOL):
        target = max(float(s) for s in want)
        raise InputError(
            f"{input_path}: voxel size {_fmt(spacing)} mm differs from the {_fmt(want)} mm the "
            f"model was trained on; preprocess it onto that grid (mrbench preprocess "
            f"--target-spacing {target:g}) or use a model trained at this voxel size"
        )
    volume = nib.orientations.apply_orientation(data, to_model)
    mask = None
    if mask_img is not None:
        mask = nib.orientations.apply_orientation(np.asarray(mask_img.dataobj), to_model)

    def restore(pred: np.ndarray) -> np.ndarray:
        out = nib.orientations.apply_orientation(pred, back)
        if out.shape != img.shape:  # never an image on another grid
            raise RuntimeError(f"prediction shape {out.shape} is not the input's {img.shape}")
        return np.ascontiguousarray(out, dtype=np.float32)

    return volume, mask, restore, notes
