"""T2 -> T1 registration with antspyx, the shared linear ANTs registration, and grid resampling.

:func:`coarse_translation` finds a starting offset by an exhaustive NMI search (scanner
coordinates of two sessions can disagree by centimetres); :func:`register_t2` then fits a rigid
or affine transform with Mattes mutual information inside the dilated brain mask and resamples
the T2 onto the T1 grid. :func:`linear_registration` is the rigid/affine ANTs call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
from scipy import ndimage

from mrbench.preprocessing.ants_io import (
    load_ants,
    resample_iso,
    to_ants,
    translation_file,
    voxel_sizes,
)
from mrbench.preprocessing.morphology import bbox_slices, dilate_mm
from mrbench.preprocessing.params import PreprocessParams
from mrbench.preprocessing.similarity import nmi_from_bins, quantise


def linear_registration(
    fixed,
    moving,
    kind: str,
    init: str,
    mask,
    *,
    sampling_rate: float,
    iterations: tuple[int, ...],
    shrink: tuple[int, ...],
    sigmas: tuple[float, ...],
    outprefix: str,
    seed: int,
) -> dict:
    """ANTs ``kind`` ("Rigid" or "Affine") registration started at the transform file ``init``:
    Mattes mutual information (32 bins, ``sampling_rate`` random sampling) inside ``mask``, one
    level per entry of ``iterations`` with its ``shrink`` factor and smoothing ``sigmas``."""
    return load_ants().registration(
        fixed=fixed,
        moving=moving,
        type_of_transform=kind,
        initial_transform=[init],
        mask=mask,
        aff_metric="mattes",
        aff_sampling=32,
        aff_random_sampling_rate=sampling_rate,
        aff_iterations=iterations,
        aff_shrink_factors=shrink,
        aff_smoothing_sigmas=sigmas,
        outprefix=outprefix,
        random_seed=seed,
    )


def coarse_translation(
    t1: np.ndarray,
    t1_affine: np.ndarray,
    brain: np.ndarray,
    t2: np.ndarray,
    t2_affine: np.ndarray,
    params: PreprocessParams,
) -> np.ndarray:
    """RAS offset t (T1 point x lies at T2 point x + t) maximising NMI inside the T1 brain.

    An exhaustive search over translations (+-40 mm in 8 mm steps, then +-6 mm in 2 mm steps)
    on a 6 mm sample of the brain. Scanner coordinates of two sessions (or of a T2 slab) can
    disagree by several centimetres, beyond the capture range of a gradient-based rigid fit
    started at the identity; the search puts the fit inside it. Candidates that leave less than
    80% of the best achievable overlap inside the T2 field of view are not considered.
    """
    bins = 32
    step_mm = 6.0
    spacing = voxel_sizes(t1_affine)
    stride = np.maximum(np.round(step_mm / spacing).astype(int), 1)
    sub = brain[:: stride[0], :: stride[1], :: stride[2]]
    ijk = np.argwhere(sub) * stride
    if len(ijk) < 50:
        return np.zeros(3)
    pts = nib.affines.apply_affine(t1_affine, ijk)
    a_vals = ndimage.gaussian_filter(t1, 1.5 / spacing)[tuple(ijk.T)]
    a_lo, a_hi = np.percentile(a_vals, [1, 99])
    a_q = quantise(a_vals, a_lo, a_hi, bins)
    t2_spacing = voxel_sizes(t2_affine)
    t2s = ndimage.gaussian_filter(t2, 1.5 / t2_spacing)
    fg = t2s[t2s > 0]
    b_lo, b_hi = np.percentile(fg, [1, 99]) if fg.size else (0.0, 1.0)
    inv = np.linalg.inv(t2_affine)
    shape = np.array(t2.shape)

    def score(offset: np.ndarray) -> tuple[float, int]:
        vox = nib.affines.apply_affine(inv, pts + offset)
        inside = np.all((vox >= 0) & (vox <= shape - 1), axis=1)
        n = int(inside.sum())
        if n < 50:
            return -np.inf, n
        b = ndimage.map_coordinates(t2s, vox[inside].T, order=1)
        return nmi_from_bins(a_q[inside], quantise(b, b_lo, b_hi, bins), bins), n

    def search(centre: np.ndarray, radius: float, step: float) -> np.ndarray:
        r = np.arange(-radius, radius + 1e-6, step)
        cands = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3) + centre
        results = [score(c) for c in cands]
        overlap = np.array([n for _, n in results])
        vals = np.array([v for v, _ in results])
        vals[overlap < 0.8 * overlap.max()] = -np.inf
        return cands[int(np.argmax(vals))]

    best = search(np.zeros(3), 40.0, 8.0)
    return search(best, 6.0, 2.0)


class T2Registration(NamedTuple):
    """What :func:`register_t2` returns, every volume on the T1 grid."""

    registered: np.ndarray  #: the T2 moved by the fitted transform
    header_only: np.ndarray  #: the T2 placed by its header alone (QC: before registration)
    fov: np.ndarray  #: fraction of each voxel inside the T2 field of view
    timings: dict  #: seconds of the search, the fit and the resampling
    others: dict[str, np.ndarray]  #: the ``others`` volumes moved by the T2's transform


def register_t2(
    t1: np.ndarray,
    t1_affine: np.ndarray,
    t2: np.ndarray,
    t2_affine: np.ndarray,
    mask: np.ndarray,
    params: PreprocessParams,
    workdir: Path,
    others: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> T2Registration:
    """Register T2 to T1 (MI) and resample it onto the T1 grid.

    ``others`` (name -> (volume, affine)) are volumes of the T2's acquisition (IXI's PD, the
    other echo of the same dual-echo scan): they are not registered themselves but moved by the
    T2's transform (in scanner coordinates, so also where their grid differs from the T2's).
    """
    ants = load_ants()
    spacing = voxel_sizes(t1_affine)
    fixed_full = to_ants(t1, t1_affine)
    moving_full = to_ants(t2, t2_affine)
    reg_spacing = max(params.t2_spacing, float(spacing.min()))
    fixed = resample_iso(fixed_full, reg_spacing)
    moving = resample_iso(moving_full, reg_spacing)
    metric_mask = to_ants(
        dilate_mm(mask, params.t2_mask_dilation_mm, spacing).astype(np.float32), t1_affine
    )
    metric_mask = ants.resample_image_to_target(metric_mask, fixed, interp_type="nearestNeighbor")
    timings = {}
    tic = time.perf_counter()
    offset = coarse_translation(t1, t1_affine, mask, t2, t2_affine, params)
    timings["search"] = time.perf_counter() - tic
    init = translation_file(offset, workdir, "t2_init.mat")
    tx = _fit_t2(fixed, moving, init, metric_mask, params, workdir)
    timings["fit"] = time.perf_counter() - tic - timings["search"]
    box, ref = _brain_box_reference(t1, t1_affine, mask, spacing)
    out = ants.apply_transforms(
        fixed=ref, moving=moving_full, transformlist=tx, interpolator=params.interpolation
    )
    header_only = ants.resample_image_to_target(moving_full, ref, interp_type="linear")
    ones = to_ants(np.ones(t2.shape, np.float32), t2_affine)
    fov = ants.apply_transforms(fixed=ref, moving=ones, transformlist=tx, interpolator="linear")
    moved = {
        name: ants.apply_transforms(
            fixed=ref, moving=to_ants(vol, aff), transformlist=tx, interpolator=params.interpolation
        )
        for name, (vol, aff) in (others or {}).items()
    }
    timings["resample"] = time.perf_counter() - tic - timings["search"] - timings["fit"]

    def paste(img) -> np.ndarray:
        full = np.zeros(t1.shape, np.float32)
        full[box] = img.numpy()
        return full

    return T2Registration(
        np.clip(paste(out), 0, None),
        np.clip(paste(header_only), 0, None),
        paste(fov),
        {k: round(v, 1) for k, v in timings.items()},
        {name: np.clip(paste(img), 0, None) for name, img in moved.items()},
    )


def _fit_t2(
    fixed, moving, init: str, metric_mask, params: PreprocessParams, workdir: Path
) -> list[str]:
    """Fit the T2 -> T1 transform (rigid or affine, per ``params.registration``) from ``init``;
    return its forward transform files. The multi-resolution schedule halves the shrink factor
    at each of the ``params.t2_iterations`` levels, with smoothing sigma = shrink - 1 voxels.
    """
    kind = "Rigid" if params.registration == "rigid" else "Affine"
    n = len(params.t2_iterations)
    shrink = tuple(2 ** (n - 1 - i) for i in range(n))
    reg = linear_registration(
        fixed,
        moving,
        kind,
        init,
        metric_mask,
        sampling_rate=0.2,
        iterations=params.t2_iterations,
        shrink=shrink,
        sigmas=tuple(float(s - 1) for s in shrink),
        outprefix=str(workdir / "t2_"),
        seed=params.seed,
    )
    return reg["fwdtransforms"]


def _brain_box_reference(
    t1: np.ndarray, t1_affine: np.ndarray, mask: np.ndarray, spacing: np.ndarray
) -> tuple[tuple[slice, ...], object]:
    """The brain's bounding box on the T1 grid (mask dilated 4 mm, 2-voxel margin) and an ants
    reference image of that crop: resampling happens inside it only, since the rest is outside
    the mask anyway."""
    box = bbox_slices(dilate_mm(mask, 4.0, spacing), 2)
    lo = np.array([b.start for b in box])
    crop_aff = t1_affine.copy()
    crop_aff[:3, 3] = nib.affines.apply_affine(t1_affine, lo)
    return box, to_ants(t1[box], crop_aff)


def target_grid(shape: tuple[int, ...], affine: np.ndarray, spacing: float) -> tuple:
    """Shape and affine of an isotropic grid of ``spacing`` mm covering the same field of view."""
    old = voxel_sizes(affine)
    extent = np.asarray(shape) * old
    new_shape = tuple(int(max(1, round(e / spacing))) for e in extent)
    rot = affine[:3, :3] / old
    new_aff = np.eye(4)
    new_aff[:3, :3] = rot * spacing
    # keep the field of view's corner (voxel edge) in place
    corner = affine[:3, 3] - rot @ (old / 2)
    new_aff[:3, 3] = corner + rot @ (np.full(3, spacing) / 2)
    return new_shape, new_aff


def resample_to(
    data: np.ndarray, affine: np.ndarray, shape: tuple, new_affine: np.ndarray, interp: str
) -> np.ndarray:
    ants = load_ants()
    ref = to_ants(np.zeros(shape, np.float32), new_affine)
    out = ants.apply_transforms(
        fixed=ref, moving=to_ants(data, affine), transformlist=[], interpolator=interp
    )
    return out.numpy()
