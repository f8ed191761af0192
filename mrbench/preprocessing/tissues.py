"""Tissue classes of a skull-stripped T1w: Atropos CSF/GM/WM labels, tumour overlay, class QC."""

from __future__ import annotations

import os
import tempfile

import nibabel as nib
import numpy as np

from mrbench.domain import TISSUE_LABELS, TUMOUR_LABEL
from mrbench.io import InputError
from mrbench.preprocessing.ants_io import load_ants, to_ants, voxel_sizes
from mrbench.preprocessing.morphology import bbox_slices


def segment_tissues(
    t1: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    iterations: int = 2,
    mrf: float = 0.1,
    seed: int = 1,
) -> tuple[np.ndarray, dict]:
    """CSF/GM/WM classes of a skull-stripped T1w inside ``mask`` with antspyx Atropos.

    Atropos (k-means initialisation, 3 Gaussian classes, ``iterations`` EM steps with an MRF
    prior of weight ``mrf``) is run inside the mask; the classes are then ordered by their mean
    T1w intensity, which in a T1-weighted image is CSF < GM < WM. Returns the label map (uint8,
    0 outside the mask) and a QC dict (class volumes in ml, mean intensities, method).
    """
    if not mask.any():
        raise InputError("tissue classes: empty brain mask")
    os.environ.setdefault("ANTS_RANDOM_SEED", str(seed))
    ants = load_ants()
    # on the mask's bounding box (the grid's corner moved with it): a BraTS or IXI volume is
    # mostly background, which Atropos would otherwise carry through every image operation
    box = bbox_slices(mask, 1)
    lo = np.array([b.start for b in box])
    box_aff = affine.copy()
    box_aff[:3, 3] = nib.affines.apply_affine(affine, lo)
    img = to_ants(t1[box].astype(np.float32), box_aff)
    msk = to_ants(mask[box].astype(np.float32), box_aff)
    # antspyx writes the class probability images to tempfile's folder and never deletes them:
    # point that folder at one of ours for the call (the images are read into memory)
    with tempfile.TemporaryDirectory(prefix="mrbench-atropos-") as scratch:
        before, tempfile.tempdir = tempfile.tempdir, scratch
        try:
            seg = ants.atropos(
                a=img,
                x=msk,
                i="kmeans[3]",
                m=f"[{mrf},1x1x1]",
                c=f"[{int(iterations)},0]",
                verbose=0,
            )
        finally:
            tempfile.tempdir = before
    raw = np.zeros(t1.shape, np.int64)
    raw[box] = seg["segmentation"].numpy()
    raw[~mask.astype(bool)] = 0
    means = {k: float(t1[raw == k].mean()) if (raw == k).any() else -np.inf for k in (1, 2, 3)}
    order = sorted(means, key=lambda k: means[k])  # darkest first
    labels = np.zeros(t1.shape, np.uint8)
    for name, k in zip(("csf", "gm", "wm"), order, strict=True):
        labels[raw == k] = TISSUE_LABELS[name]
    method = f"antspyx Atropos, k-means[3] init, {int(iterations)} EM iterations, MRF {mrf}"
    return labels, tissue_qc(labels, t1, affine, method)


def tissue_qc(labels: np.ndarray, t1: np.ndarray, affine: np.ndarray, method: str) -> dict:
    """Class volumes (ml) and mean T1w intensity per class of a label map."""
    voxel_ml = float(np.prod(voxel_sizes(affine))) / 1000.0
    names = {**{v: k for k, v in TISSUE_LABELS.items()}, TUMOUR_LABEL: "tumour"}
    volumes, intensity = {}, {}
    for code, name in names.items():
        sel = labels == code
        if code == TUMOUR_LABEL and not sel.any():
            continue
        volumes[name] = round(float(sel.sum()) * voxel_ml, 1)
        intensity[name] = round(float(t1[sel].mean()), 4) if sel.any() else float("nan")
    return {"method": method, "volumes_ml": volumes, "mean_t1": intensity}


def tumour_labels(labels: np.ndarray, seg: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Overlay a tumour segmentation (any non-zero label) as class 4 inside the brain mask."""
    out = labels.copy()
    out[(seg > 0) & (mask > 0)] = TUMOUR_LABEL
    return out
