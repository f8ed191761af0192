"""Skull-stripping without network weights: MNI152 template fit + intensity refinement.

The template (brain-extracted T1 and WM map, resampled to ``template_spacing`` mm) is registered
to the subject by a translation that puts its brain under the top of the subject's head, an
affine fit and optionally a short SyN; its brain boundary (as a signed distance map) is warped
back onto the subject's T1 grid and refined by tissue intensities relative to white matter,
then cleaned by opening, largest component, closing and hole filling (radii in millimetres).
"""

from __future__ import annotations

import functools
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from mrbench.io import InputError
from mrbench.preprocessing.ants_io import (
    from_ants,
    load_ants,
    load_template,
    resample_iso,
    to_ants,
    translation_file,
    voxel_sizes,
)
from mrbench.preprocessing.morphology import ball, bbox_slices, fill_holes, largest_component
from mrbench.preprocessing.params import PreprocessParams
from mrbench.preprocessing.registration import linear_registration


def _head_mask(data: np.ndarray) -> np.ndarray:
    """Foreground (head) by a threshold between background and tissue, largest component."""
    pos = data[data > 0]
    if pos.size == 0:
        return data > 0
    thr = 0.1 * float(np.percentile(pos, 98))
    return largest_component(data > thr)


def _initial_translation(
    t1: np.ndarray, affine: np.ndarray, tmpl_mask: np.ndarray, tmpl_affine: np.ndarray, depth: float
) -> np.ndarray:
    """RAS offset moving the template brain under the top of the subject's head.

    Centre of mass of the head in x and y (over its upper 100 mm), and in z the template's
    brain top placed ``depth`` mm below the head top: robust to neck and shoulders in the field
    of view, which drag a plain centre-of-mass initialisation far down.
    """
    stride = np.maximum(np.round(3.0 / voxel_sizes(affine)).astype(int), 1)
    sub = t1[:: stride[0], :: stride[1], :: stride[2]]
    sub_aff = affine.copy()
    sub_aff[:3, :3] = affine[:3, :3] * stride
    xyz = nib.affines.apply_affine(sub_aff, np.argwhere(_head_mask(sub)))
    top = xyz[:, 2].max()
    centre = xyz[xyz[:, 2] > top - 100].mean(axis=0)
    txyz = nib.affines.apply_affine(tmpl_affine, np.argwhere(tmpl_mask))
    t_centre = txyz.mean(axis=0)
    t_top = txyz[:, 2].max()
    depth = min(depth, 0.5 * (top - xyz[:, 2].min()))
    return np.array([centre[0] - t_centre[0], centre[1] - t_centre[1], (top - depth) - t_top])


@functools.lru_cache(maxsize=4)
def _template_at(spacing: float) -> dict:
    """Template T1, WM map and signed distance (mm) to the brain boundary at ``spacing`` mm."""
    ants = load_ants()
    tmpl = load_template()
    t_t1, t_aff = tmpl["t1"]
    full = to_ants(t_t1, t_aff)
    low = resample_iso(full, spacing)
    brain = low.numpy() > 0.02
    sp = np.asarray(low.spacing)
    sdist = ndimage.distance_transform_edt(~brain, sampling=sp) - ndimage.distance_transform_edt(
        brain, sampling=sp
    )
    wm = ants.resample_image_to_target(to_ants(tmpl["wm"][0], t_aff), low, interp_type="linear")
    return {
        "t1": low,
        "mask": brain,
        "sdist": low.new_image_like(sdist.astype(np.float32)),
        "wm": wm,
        "full": full,
        "affine": from_ants(low)[1],
    }


def _syn_inverse(
    tp: dict, metric_mask, subj, transforms: list[str], params: PreprocessParams, workdir: Path
) -> str:
    """Short SyN refinement of the affine template fit; its inverse warp (template <- subject)."""
    ants = load_ants()
    fixed_syn = resample_iso(tp["full"], params.syn_spacing)
    mask_syn = ants.resample_image_to_target(metric_mask, fixed_syn, interp_type="nearestNeighbor")
    moving_syn = resample_iso(subj, params.syn_spacing)
    reg_syn = ants.registration(
        fixed=fixed_syn,
        moving=moving_syn,
        type_of_transform="SyNOnly",
        initial_transform=transforms,
        mask=mask_syn,
        syn_metric="mattes",
        syn_sampling=32,
        reg_iterations=params.syn_iterations,
        flow_sigma=3,
        total_sigma=0,
        outprefix=str(workdir / "tmpl_syn_"),
        random_seed=params.seed,
    )
    return reg_syn["invtransforms"][-1]


def _fit_template(
    subj, offset: np.ndarray, tp: dict, params: PreprocessParams, workdir: Path
) -> tuple[list[str], list[bool]]:
    """Template -> subject transforms (with their inversion flags for ``apply_transforms``):
    affine from the translation ``offset``, then optionally SyN."""
    fixed = tp["t1"]
    metric_mask = tp["sdist"].new_image_like(
        (tp["sdist"].numpy() <= params.metric_mask_dilation_mm).astype(np.float32)
    )
    moving = resample_iso(subj, params.template_spacing)
    init = translation_file(offset, workdir)
    n = len(params.affine_iterations)
    reg = linear_registration(
        fixed,
        moving,
        "Affine",
        init,
        metric_mask,
        sampling_rate=0.25,
        iterations=params.affine_iterations,
        shrink=(4, 2, 1)[-n:],
        sigmas=(2, 1, 0)[-n:],
        outprefix=str(workdir / "tmpl_aff_"),
        seed=params.seed,
    )
    transforms = reg["fwdtransforms"]
    if not params.syn:
        return [transforms[0]], [True]
    # subject -> template is (affine, then warp); its inverse: affine^-1 after warp^-1
    warp = _syn_inverse(tp, metric_mask, subj, transforms, params, workdir)
    return [transforms[0], warp], [True, False]


def _warp(subj, img, transforms: tuple[list[str], list[bool]], default: float) -> np.ndarray:
    """A template image on the subject's grid (linear), ``default`` outside the template."""
    out = load_ants().apply_transforms(
        fixed=subj,
        moving=img,
        transformlist=transforms[0],
        whichtoinvert=transforms[1],
        interpolator="linear",
        defaultvalue=default,
    )
    return out.numpy()


def _refine(
    t1b: np.ndarray, sdb: np.ndarray, wm: np.ndarray, spacing: np.ndarray, params: PreprocessParams
) -> tuple[np.ndarray, dict]:
    """Brain mask on a box from the warped signed distance ``sdb`` (mm) and WM map: tissue
    thresholds in a band around the boundary, then opening, largest component and closing."""
    # tissue thresholds relative to white matter (T1: WM is the brightest brain tissue)
    wm_vox = t1b[(wm > 0.9) & (sdb < -5.0)]
    if wm_vox.size < 50:
        wm_vox = t1b[sdb < 0]
    wm_level = float(np.median(wm_vox))
    lo, hi = params.dark_fraction * wm_level, params.bright_fraction * wm_level
    inner = sdb < -params.band_mm
    band = (sdb < 0) & ~inner
    tissue = (t1b >= lo) & (t1b <= hi)
    sub = inner | (band & tissue)
    sub = ndimage.binary_opening(sub, structure=ball(params.open_mm, spacing))
    sub = largest_component(sub)
    sub = ndimage.binary_closing(sub, structure=ball(params.close_mm, spacing), iterations=1)
    sub &= sdb < params.band_mm
    info = {
        "wm_intensity": round(wm_level, 3),
        "dark_threshold": round(lo, 3),
        "bright_threshold": round(hi, 3),
    }
    return sub, info


def skull_strip(
    t1: np.ndarray, affine: np.ndarray, params: PreprocessParams, workdir: Path
) -> tuple[np.ndarray, dict]:
    """Brain mask of a canonical T1 by template registration and intensity refinement."""
    spacing = voxel_sizes(affine)
    tp = _template_at(float(params.template_spacing))
    info: dict = {}
    subj = to_ants(t1, affine)
    offset = _initial_translation(t1, affine, tp["mask"], tp["affine"], params.brain_top_depth_mm)
    transforms = _fit_template(subj, offset, tp, params, workdir)
    info["syn"] = bool(params.syn)
    # signed distance to the template brain boundary, mm
    sdist = _warp(subj, tp["sdist"], transforms, float(tp["sdist"].numpy().max()))
    core = sdist < 0
    if core.sum() == 0:
        raise InputError("skull-strip failed: the template brain does not overlap the T1 volume")
    box = bbox_slices(sdist < params.band_mm + 2 * max(spacing), 2)
    wm = _warp(subj, tp["wm"], transforms, 0.0)[box]
    sub, thresholds = _refine(t1[box], sdist[box], wm, spacing, params)
    mask = np.zeros(t1.shape, dtype=bool)
    mask[box] = sub
    mask = fill_holes(mask)
    info.update(
        {
            "initial_translation_mm": [round(float(v), 1) for v in offset],
            **thresholds,
            "template_mask_volume_ml": round(float(core.sum() * np.prod(spacing)) / 1000, 1),
        }
    )
    return mask, info
