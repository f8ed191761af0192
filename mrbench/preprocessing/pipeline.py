"""Per-subject preprocessing of raw T1w/T2w pairs: orient, skull-strip, register, normalise.

Raw IXI volumes are neither skull-stripped nor co-registered, and T1 and T2 are acquired on
different grids (sagittal 1.2 mm vs axial 1.25 mm slabs). A translation benchmark needs both on
one grid with one brain mask, so each subject goes through:

1. **Orientation**: both volumes are reoriented to the closest canonical (RAS) orientation.
2. **Skull-stripping without network weights**: the MNI152 2009a template that ships with
   nilearn (a brain-extracted T1 with GM and WM probability maps, 1 mm) is registered to the
   subject with antspyx, template -> subject, by a translation that puts the template's brain
   just under the top of the subject's head, then rigid + affine with Mattes mutual information
   restricted to a dilated template brain mask, optionally followed by a short SyN at low
   resolution. The template's brain mask (its non-zero voxels) is carried back to the subject's
   T1 grid and refined by tissue intensities: near the warped boundary, voxels darker than the
   bone/air threshold or brighter than the fat threshold (both relative to the white matter
   intensity measured under the warped WM map) are removed; then a morphological opening, the
   largest connected component, hole filling and a closing. All radii are in millimetres, so the
   same parameters work on 1 mm research scans and on 5 mm thick-slice clinical scans.
3. **T2 -> T1 registration** with antspyx: rigid (default) or affine, Mattes mutual
   information restricted to the dilated brain mask; T2 is resampled onto the T1 grid (or onto
   a grid of ``target_spacing`` mm covering the T1 field of view).
4. **Optional N4** bias-field correction of both volumes inside the brain mask.
5. **Normalisation** with :func:`mrbench.slices.normalise_volume` (the benchmark's single rule).
6. **Tissue classes** (:func:`segment_tissues`): antspyx Atropos, k-means initialised, 3 classes
   inside the brain mask on the T1w with a light MRF prior; the classes are named by their mean
   T1w intensity (darkest CSF, then GM, brightest WM) and written as ``label.nii.gz``
   (0 background, 1 CSF, 2 GM, 3 WM); their volumes go into ``qc.json`` and the QC figure shows
   the map. Methods with class-wise memories (MGUIT, HiFi-Syn) train with these labels.

The mask written is the brain mask intersected with the region the T2 field of view covers, so
that no training pair contains brain in one contrast and nothing in the other. ``qc.json`` holds
the similarity of T1 and T2 inside the brain before (header-only alignment) and after
registration (normalised mutual information and local-contrast-free NCC of gradient
magnitudes), the brain volume and the mask volume; ``qc.png`` shows T2 edges over T1 on a few
slices of each orientation so a failed subject is seen at a glance.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from mrbench.domain import TISSUE_LABELS, TUMOUR_LABEL
from mrbench.io import InputError, atomic_path, load_volume, save_volume
from mrbench.slices import NORMALISATION_RULE, normalise_volume

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
_LPS = np.diag([-1.0, -1.0, 1.0])
#: plausible adult brain volume (ml): a mask outside this range kept skull or scalp, or lost brain
BRAIN_VOLUME_ML = (900.0, 2000.0)
#: a T2 -> T1 registration that raised NMI by less than this and the gradient NCC by less than
#: :data:`MIN_NCC_GAIN` barely moved the images: it failed to start, or the headers were all
MIN_NMI_GAIN = 0.002
MIN_NCC_GAIN = 0.01


@dataclass
class PreprocessParams:
    """All parameters of the pipeline (documented in docs/datasets.md)."""

    skull_stripped: bool = False  #: inputs already skull-stripped: mask = non-zero T1
    registration: str = "rigid"  #: T2 -> T1 transform: "rigid" or "affine"
    n4: bool = False  #: N4 bias-field correction of both volumes
    target_spacing: float | None = None  #: output grid spacing (mm); None = the T1 grid
    # skull-strip
    template_spacing: float = 2.0  #: resolution (mm) of the affine template registration
    affine_iterations: tuple[int, ...] = (100, 50, 20)  #: per level, shrink 4, 2, 1
    syn: bool = True  #: refine the template fit with a short SyN
    syn_spacing: float = 4.0  #: resolution (mm) of the SyN stage
    syn_iterations: tuple[int, ...] = (30, 15)
    metric_mask_dilation_mm: float = 10.0  #: dilation of the template mask for the metric
    brain_top_depth_mm: float = 12.0  #: initial distance of the brain top below the head top
    band_mm: float = 6.0  #: half-width of the refinement band around the warped boundary
    dark_fraction: float = 0.12  #: bone/air threshold, fraction of white-matter intensity
    bright_fraction: float = 1.6  #: fat threshold, fraction of white-matter intensity
    open_mm: float = 2.0  #: opening radius (cuts thin bridges to scalp)
    close_mm: float = 3.0  #: closing radius
    # T2 -> T1
    t2_spacing: float = 1.5  #: finest registration resolution (mm)
    t2_iterations: tuple[int, ...] = (100, 50, 25)
    t2_mask_dilation_mm: float = 8.0
    interpolation: str = "bSpline"  #: ANTs interpolator for the T2 (linear blurs edges)
    seed: int = 1
    fov_threshold: float = 0.99  #: fraction of a voxel inside the T2 field of view
    # tissue classes
    tissue_classes: bool = True  #: write label.nii.gz (CSF/GM/WM by Atropos)
    tissue_iterations: int = 2  #: Atropos EM iterations after the k-means initialisation
    tissue_mrf: float = 0.1  #: Atropos MRF smoothing weight (1x1x1 neighbourhood)

    def __post_init__(self) -> None:
        if self.registration not in ("rigid", "affine"):
            raise ValueError(f"registration must be 'rigid' or 'affine', not {self.registration!r}")


# --------------------------------------------------------------------------- conversions


def _ants():
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")
    import ants

    return ants


def to_ants(data: np.ndarray, affine: np.ndarray):
    """A canonical (RAS, no shear) nibabel array + affine as an ANTs image (LPS physical space)."""
    ants = _ants()
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
    return _ants().resample_image(img, (spacing,) * 3, use_voxels=False, interp_type=0)


def template_path(name: str) -> Path:
    import nilearn.datasets

    path = Path(nilearn.datasets.__file__).parent / "data" / TEMPLATE_FILES[name]
    if not path.exists():
        raise InputError(f"{path}: MNI152 template file missing from the nilearn installation")
    return path


def load_template() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name in TEMPLATE_FILES:
        data, affine = canonical(nib.load(template_path(name)))
        out[name] = (data / max(float(data.max()), 1e-6), affine)
    return out


# --------------------------------------------------------------------------- morphology


def ball(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Ellipsoidal structuring element of ``radius_mm`` on a grid of voxel ``spacing``."""
    r = np.maximum(np.floor(radius_mm / np.asarray(spacing)), 0).astype(int)
    grid = np.ogrid[tuple(slice(-k, k + 1) for k in r)]
    dist = sum((g * s / max(radius_mm, 1e-6)) ** 2 for g, s in zip(grid, spacing, strict=True))
    return dist <= 1.0


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


# --------------------------------------------------------------------------- similarity


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

    def ent(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    return (ent(px) + ent(py)) / ent(p.ravel())


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


# --------------------------------------------------------------------------- skull-strip


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


def _translation_file(offset_ras: np.ndarray, folder: Path, name: str = "init.mat") -> str:
    """An ITK translation mapping fixed points to moving points (RAS offset), as a .mat file."""
    ants = _ants()
    tx = ants.create_ants_transform(
        transform_type="AffineTransform", dimension=3, translation=tuple(_LPS @ offset_ras)
    )
    path = str(folder / name)
    ants.write_transform(tx, path)
    return path


@functools.lru_cache(maxsize=4)
def _template_at(spacing: float) -> dict:
    """Template T1, WM map and signed distance (mm) to the brain boundary at ``spacing`` mm."""
    ants = _ants()
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


def skull_strip(
    t1: np.ndarray, affine: np.ndarray, params: PreprocessParams, workdir: Path
) -> tuple[np.ndarray, dict]:
    """Brain mask of a canonical T1 by template registration and intensity refinement."""
    ants = _ants()
    spacing = voxel_sizes(affine)
    tp = _template_at(float(params.template_spacing))
    info: dict = {}
    fixed = tp["t1"]
    metric_mask = tp["sdist"].new_image_like(
        (tp["sdist"].numpy() <= params.metric_mask_dilation_mm).astype(np.float32)
    )
    subj = to_ants(t1, affine)
    moving = resample_iso(subj, params.template_spacing)

    offset = _initial_translation(t1, affine, tp["mask"], tp["affine"], params.brain_top_depth_mm)
    init = _translation_file(offset, workdir)
    reg = ants.registration(
        fixed=fixed,
        moving=moving,
        type_of_transform="Affine",
        initial_transform=[init],
        mask=metric_mask,
        aff_metric="mattes",
        aff_sampling=32,
        aff_random_sampling_rate=0.25,
        aff_iterations=params.affine_iterations,
        aff_shrink_factors=(4, 2, 1)[-len(params.affine_iterations) :],
        aff_smoothing_sigmas=(2, 1, 0)[-len(params.affine_iterations) :],
        outprefix=str(workdir / "tmpl_aff_"),
        random_seed=params.seed,
    )
    transforms = reg["fwdtransforms"]
    inv_list, inv_flags = [transforms[0]], [True]
    info["syn"] = bool(params.syn)
    if params.syn:
        fixed_syn = resample_iso(tp["full"], params.syn_spacing)
        mask_syn = ants.resample_image_to_target(
            metric_mask, fixed_syn, interp_type="nearestNeighbor"
        )
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
        # subject -> template is (affine, then warp); its inverse: affine^-1 after warp^-1
        inv_list = [transforms[0], reg_syn["invtransforms"][-1]]
        inv_flags = [True, False]

    def warp(img) -> np.ndarray:
        out = ants.apply_transforms(
            fixed=subj,
            moving=img,
            transformlist=inv_list,
            whichtoinvert=inv_flags,
            interpolator="linear",
            defaultvalue=float(img.numpy().max()) if img is tp["sdist"] else 0.0,
        )
        return out.numpy()

    sdist = warp(tp["sdist"])  # signed distance to the template brain boundary, mm
    core = sdist < 0
    if core.sum() == 0:
        raise InputError("skull-strip failed: the template brain does not overlap the T1 volume")
    box = bbox_slices(sdist < params.band_mm + 2 * max(spacing), 2)
    wm = warp(tp["wm"])[box]
    t1b, sdb = t1[box], sdist[box]
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
    mask = np.zeros(t1.shape, dtype=bool)
    mask[box] = sub
    mask = fill_holes(mask)
    info.update(
        {
            "initial_translation_mm": [round(float(v), 1) for v in offset],
            "wm_intensity": round(wm_level, 3),
            "dark_threshold": round(lo, 3),
            "bright_threshold": round(hi, 3),
            "template_mask_volume_ml": round(float(core.sum() * np.prod(spacing)) / 1000, 1),
        }
    )
    return mask, info


# --------------------------------------------------------------------------- T2 -> T1


def _quantise(v: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    q = np.floor((v - lo) / max(hi - lo, 1e-6) * bins).astype(np.int64)
    return np.clip(q, 0, bins - 1)


def _nmi_from_bins(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    joint = np.bincount(a * bins + b, minlength=bins * bins).astype(np.float64)
    p = joint / joint.sum()
    pa, pb = p.reshape(bins, bins).sum(1), p.reshape(bins, bins).sum(0)

    def ent(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    return (ent(pa) + ent(pb)) / max(ent(p), 1e-12)


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
    a_q = _quantise(a_vals, a_lo, a_hi, bins)
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
        return _nmi_from_bins(a_q[inside], _quantise(b, b_lo, b_hi, bins), bins), n

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


def register_t2(
    t1: np.ndarray,
    t1_affine: np.ndarray,
    t2: np.ndarray,
    t2_affine: np.ndarray,
    mask: np.ndarray,
    params: PreprocessParams,
    workdir: Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Register T2 to T1 (MI) and resample it onto the T1 grid.

    Returns (registered T2, header-only resampled T2, fraction-of-T2-FOV map, timings).
    """
    ants = _ants()
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
    init = _translation_file(offset, workdir, "t2_init.mat")
    kind = "Rigid" if params.registration == "rigid" else "Affine"
    n = len(params.t2_iterations)
    shrink = tuple(2 ** (n - 1 - i) for i in range(n))
    reg = ants.registration(
        fixed=fixed,
        moving=moving,
        type_of_transform=kind,
        initial_transform=[init],
        mask=metric_mask,
        aff_metric="mattes",
        aff_sampling=32,
        aff_random_sampling_rate=0.2,
        aff_iterations=params.t2_iterations,
        aff_shrink_factors=shrink,
        aff_smoothing_sigmas=tuple(float(s - 1) for s in shrink),
        outprefix=str(workdir / "t2_"),
        random_seed=params.seed,
    )
    tx = reg["fwdtransforms"]
    timings["fit"] = time.perf_counter() - tic - timings["search"]
    # resample inside the brain's bounding box only (the rest is outside the mask anyway)
    box = bbox_slices(dilate_mm(mask, 4.0, spacing), 2)
    lo = np.array([b.start for b in box])
    crop_aff = t1_affine.copy()
    crop_aff[:3, 3] = nib.affines.apply_affine(t1_affine, lo)
    ref = to_ants(t1[box], crop_aff)
    out = ants.apply_transforms(
        fixed=ref, moving=moving_full, transformlist=tx, interpolator=params.interpolation
    )
    header_only = ants.resample_image_to_target(moving_full, ref, interp_type="linear")
    ones = to_ants(np.ones(t2.shape, np.float32), t2_affine)
    fov = ants.apply_transforms(fixed=ref, moving=ones, transformlist=tx, interpolator="linear")
    timings["resample"] = time.perf_counter() - tic - timings["search"] - timings["fit"]

    def paste(img) -> np.ndarray:
        full = np.zeros(t1.shape, np.float32)
        full[box] = img.numpy()
        return full

    return (
        np.clip(paste(out), 0, None),
        np.clip(paste(header_only), 0, None),
        paste(fov),
        {k: round(v, 1) for k, v in timings.items()},
    )


# --------------------------------------------------------------------------- grid, QC


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
    ants = _ants()
    ref = to_ants(np.zeros(shape, np.float32), new_affine)
    out = ants.apply_transforms(
        fixed=ref, moving=to_ants(data, affine), transformlist=[], interpolator=interp
    )
    return out.numpy()


def qc_figure(
    t1: np.ndarray,
    t2: np.ndarray,
    mask: np.ndarray,
    spacing: np.ndarray,
    path: Path,
    title: str,
    labels: np.ndarray | None = None,
) -> None:
    """T2 edges (red) and mask outline (cyan) over T1 on three slices of each orientation;
    with ``labels``, a fourth row shows the tissue classes on the middle slices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = gradient_edges(t2, spacing)
    idx = np.argwhere(mask)
    lo, hi = (idx.min(0), idx.max(0)) if idx.size else (np.zeros(3, int), np.array(t1.shape) - 1)
    rows = 3 if labels is None else 4
    fig, axes = plt.subplots(rows, 3, figsize=(9, 3 * rows))
    for axis in range(3):
        for col, frac in enumerate((0.3, 0.5, 0.7)):
            k = int(lo[axis] + frac * (hi[axis] - lo[axis]))
            sl = [slice(None)] * 3
            sl[axis] = k
            a, e, m = (np.take(v, k, axis=axis).T for v in (t1, edges, mask))
            asp = [s for i, s in enumerate(spacing) if i != axis]
            ax = axes[axis, col]
            ax.imshow(a, cmap="gray", origin="lower", vmin=0, vmax=1, aspect=asp[1] / asp[0])
            ax.imshow(
                np.ma.masked_where(e == 0, e),
                cmap="autumn",
                origin="lower",
                alpha=0.8,
                aspect=asp[1] / asp[0],
            )
            ax.contour(m, levels=[0.5], colors="cyan", linewidths=0.6, origin="lower")
            ax.set_title(f"{'xyz'[axis]} = {k}", fontsize=8)
            ax.axis("off")
    if labels is not None:
        _label_row(axes[3], labels, lo, hi, spacing)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def _label_row(axes, labels: np.ndarray, lo, hi, spacing: np.ndarray) -> None:
    """Tissue classes (0 black, CSF blue, GM grey, WM white, tumour red) on the middle slices."""
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["black", "tab:blue", "0.55", "white", "tab:red"])
    for axis in range(3):
        k = int(lo[axis] + 0.5 * (hi[axis] - lo[axis]))
        asp = [s for i, s in enumerate(spacing) if i != axis]
        ax = axes[axis]
        ax.imshow(
            np.take(labels, k, axis=axis).T,
            cmap=cmap,
            vmin=0,
            vmax=4,
            origin="lower",
            interpolation="nearest",
            aspect=asp[1] / asp[0],
        )
        ax.set_title(f"tissue classes, {'xyz'[axis]} = {k}", fontsize=8)
        ax.axis("off")


def gradient_edges(v: np.ndarray, spacing: np.ndarray, q: float = 90) -> np.ndarray:
    """Binary edges: gradient magnitude above its ``q``-th percentile among non-zero voxels."""
    s = ndimage.gaussian_filter(v.astype(np.float32), 1.0 / np.asarray(spacing))
    g = np.sqrt(sum(gi**2 for gi in np.gradient(s, *spacing)))
    nz = g[v > 0]
    if nz.size == 0:
        return np.zeros_like(v, dtype=np.uint8)
    return (g > np.percentile(nz, q)).astype(np.uint8)


# --------------------------------------------------------------------------- tissue classes

#: label of each tissue class in ``label.nii.gz`` (background 0; BraTS tumour 4)


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
    ants = _ants()
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


# --------------------------------------------------------------------------- pipeline


def preprocess_subject(
    t1_path: str | Path,
    t2_path: str | Path,
    out_dir: str | Path,
    params: PreprocessParams | None = None,
    subject: str | None = None,
) -> dict:
    """Run the whole pipeline for one subject; write t1/t2/mask/qc.png/qc.json; return QC."""
    params = params or PreprocessParams()
    out_dir = Path(out_dir)
    subject = subject or out_dir.name
    start = time.perf_counter()
    t1_img = load_volume(t1_path)
    t2_img = load_volume(t2_path)
    t1, t1_aff = canonical(t1_img)
    t2, t2_aff = canonical(t2_img)
    for path, data in ((t1_path, t1), (t2_path, t2)):
        np.clip(data, 0, None, out=data)  # MR magnitudes; negatives are resampling ringing
        if min(data.shape) < 8:
            raise InputError(f"{path}: volume shape {data.shape} is too small to be a brain scan")
    qc: dict = {"subject": subject, "t1": str(t1_path), "t2": str(t2_path)}
    qc["params"] = asdict(params)
    with tempfile.TemporaryDirectory(prefix="mrbench-pre-") as tmp:
        work = Path(tmp)
        nonzero = t1 > 0
        if params.target_spacing:
            shape, aff = target_grid(t1.shape, t1_aff, params.target_spacing)
            nonzero = resample_to(nonzero.astype(np.float32), t1_aff, shape, aff, "linear") > 0.5
            t1 = np.clip(resample_to(t1, t1_aff, shape, aff, "bSpline"), 0, None)
            t1_aff = aff
        spacing = voxel_sizes(t1_aff)
        t_strip = time.perf_counter()
        if params.skull_stripped:
            # on the input grid, so that interpolation ringing outside the brain does not count
            brain = fill_holes(largest_component(nonzero))
            qc["skull_strip"] = {"method": "non-zero voxels of the skull-stripped T1"}
        else:
            brain, info = skull_strip(t1, t1_aff, params, work)
            qc["skull_strip"] = {"method": "MNI152 template registration + refinement", **info}
        qc["skull_strip"]["seconds"] = round(time.perf_counter() - t_strip, 1)
        if not brain.any():
            raise InputError(f"{t1_path}: skull-strip produced an empty brain mask")
        t_reg = time.perf_counter()
        t2_reg, t2_hdr, fov, timings = register_t2(t1, t1_aff, t2, t2_aff, brain, params, work)
        qc["registration"] = {"transform": params.registration, "metric": "Mattes MI", **timings}
        qc["registration"]["seconds"] = round(time.perf_counter() - t_reg, 1)
        if params.n4:
            t1, t2_reg = _n4(t1, t1_aff, brain), _n4(t2_reg, t1_aff, brain & (fov > 0.5))
    covered = fov >= params.fov_threshold
    mask = brain & covered
    if not mask.any():
        raise InputError(f"{t2_path}: the T2 field of view does not cover the T1 brain mask")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    box = bbox_slices(mask, 3)
    a, m = t1[box], mask[box]
    qc["similarity"] = {
        "region": "brain mask within the T2 field of view",
        "nmi_header": round(nmi(a, t2_hdr[box], m), 4),
        "nmi_registered": round(nmi(a, t2_reg[box], m), 4),
        "gradient_ncc_header": round(gradient_ncc(a, t2_hdr[box], m, spacing), 4),
        "gradient_ncc_registered": round(gradient_ncc(a, t2_reg[box], m, spacing), 4),
    }
    qc["brain_volume_ml"] = round(float(brain.sum()) * voxel_ml, 1)
    qc["mask_volume_ml"] = round(float(mask.sum()) * voxel_ml, 1)
    qc["t2_fov_brain_fraction"] = round(float(mask.sum() / brain.sum()), 4)
    qc["grid"] = {"shape": list(t1.shape), "spacing_mm": [round(float(s), 4) for s in spacing]}
    qc["normalisation"] = NORMALISATION_RULE
    t1n = normalise_volume(t1, mask)
    t2n = normalise_volume(t2_reg, mask)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_volume(t1n.astype(np.float32), t1_aff, out_dir / "t1.nii.gz")
    save_volume(t2n.astype(np.float32), t1_aff, out_dir / "t2.nii.gz")
    save_volume(mask.astype(np.uint8), t1_aff, out_dir / "mask.nii.gz")
    labels = _write_tissues(t1n, mask, t1_aff, params, out_dir, qc)
    sim = qc["similarity"]
    qc_figure(
        t1n,
        t2n,
        mask,
        spacing,
        out_dir / "qc.png",
        f"{subject}: T2 edges (red) over T1, mask (cyan); NMI {sim['nmi_header']:.3f} -> "
        f"{sim['nmi_registered']:.3f}, mask {qc['mask_volume_ml']:.0f} ml",
        labels=labels,
    )
    qc["seconds"] = round(time.perf_counter() - start, 1)
    qc["flags"] = qc_flags(qc)
    for flag in qc["flags"]:  # the job's log
        print(f"QC {subject}: {flag} (see {out_dir / 'qc.png'})", file=sys.stderr, flush=True)
    with atomic_path(out_dir / "qc.json") as tmp:
        tmp.write_text(json.dumps(qc, indent=1))
    return qc


def _write_tissues(
    t1n: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    params: PreprocessParams,
    out_dir: Path,
    qc: dict,
) -> np.ndarray | None:
    """Tissue classes of the normalised T1 -> ``label.nii.gz`` and ``qc["tissue"]``."""
    if not params.tissue_classes:
        return None
    tic = time.perf_counter()
    labels, info = segment_tissues(
        t1n, mask, affine, params.tissue_iterations, params.tissue_mrf, params.seed
    )
    info["seconds"] = round(time.perf_counter() - tic, 1)
    qc["tissue"] = info
    save_volume(labels, affine, out_dir / "label.nii.gz")
    return labels


def qc_flags(qc: dict) -> list[str]:
    """Problems worth a look at ``qc.png``, one phrase each: a brain volume outside the adult
    range :data:`BRAIN_VOLUME_ML`, a registration that barely moved the similarity, a T2 field
    of view covering less than 90% of the brain."""
    flags = []
    lo, hi = BRAIN_VOLUME_ML
    vol = float(qc["brain_volume_ml"])
    if not lo <= vol <= hi:
        flags.append(
            f"brain volume {vol:.0f} ml outside the adult range {lo:.0f}-{hi:.0f} ml "
            "(mask keeps skull/scalp or misses brain)"
        )
    sim = qc["similarity"]
    d_nmi = sim["nmi_registered"] - sim["nmi_header"]
    d_ncc = sim["gradient_ncc_registered"] - sim["gradient_ncc_header"]
    if d_nmi <= 0 and d_ncc <= 0:
        flags.append(
            f"registration did not improve the similarity (NMI {d_nmi:+.4f}, gradient NCC "
            f"{d_ncc:+.4f})"
        )
    elif d_nmi < MIN_NMI_GAIN and d_ncc < MIN_NCC_GAIN:
        flags.append(
            f"registration barely moved the similarity (NMI {d_nmi:+.4f}, gradient NCC "
            f"{d_ncc:+.4f})"
        )
    if float(qc.get("t2_fov_brain_fraction", 1.0)) < 0.9:
        flags.append(f"T2 covers {qc['t2_fov_brain_fraction']:.0%} of the brain")
    return flags


def _n4(data: np.ndarray, affine: np.ndarray, mask: np.ndarray) -> np.ndarray:
    ants = _ants()
    img = to_ants(data, affine)
    m = to_ants(mask.astype(np.float32), affine)
    return np.clip(ants.n4_bias_field_correction(img, mask=m, shrink_factor=4).numpy(), 0, None)
