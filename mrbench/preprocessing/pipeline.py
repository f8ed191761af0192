"""Per-subject preprocessing of raw T1w/T2w pairs (and IXI's PDw): orient, skull-strip, register,
normalise.

Raw IXI volumes are neither skull-stripped nor co-registered, and T1 and T2 are acquired on
different grids (sagittal 1.2 mm vs axial 1.25 mm slabs). A translation benchmark needs both on
one grid with one brain mask, so each subject goes through:

1. **Orientation**: both volumes are reoriented to the closest canonical (RAS) orientation.
2. **Brain extraction** of the T1w with deepbet (:mod:`mrbench.preprocessing.skullstrip`), a
   published CNN brain extractor trained on T1w scans of adults, whose model files ship in its
   wheel; the T2w gets the T1w's mask after registration.
3. **T2 -> T1 registration** with antspyx: rigid (default) or affine, Mattes mutual
   information restricted to the dilated brain mask; T2 is resampled onto the T1 grid (or onto
   a grid of ``target_spacing`` mm covering the T1 field of view).
   A PD-weighted volume (IXI-PD: the other echo of the T2's dual-echo acquisition, on the T2's
   grid) is not registered itself: the T2's fitted transform moves it onto the same grid.
4. **Optional N4** bias-field correction of every volume inside the brain mask.
5. **Normalisation** with :func:`mrbench.slices.normalise_volume` (the benchmark's single rule).
6. **Tissue classes** (:func:`mrbench.preprocessing.tissues.segment_tissues`): antspyx Atropos,
   k-means initialised, 3 classes inside the brain mask on the T1w with a light MRF prior; the
   classes are named by their mean T1w intensity (darkest CSF, then GM, brightest WM) and
   written as ``label.nii.gz`` (0 background, 1 CSF, 2 GM, 3 WM); their volumes go into
   ``qc.json`` and the QC figure shows the map. Methods with class-wise memories (MGUIT,
   HiFi-Syn) train with these labels.

The mask written is the brain mask intersected with the region the T2 field of view covers, so
that no training pair contains brain in one contrast and nothing in the other. ``qc.json`` holds
the similarity of T1 and T2 inside the brain before (header-only alignment) and after
registration (normalised mutual information and local-contrast-free NCC of gradient
magnitudes), the brain volume and the mask volume; ``qc.png`` shows T2 edges over T1 on a few
slices of each orientation so a failed subject is seen at a glance.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mrbench.domain import DEFAULT_PAIR
from mrbench.io import InputError, atomic_path, load_volume, save_volume
from mrbench.preprocessing.ants_io import canonical, load_ants, to_ants, voxel_sizes
from mrbench.preprocessing.morphology import bbox_slices, fill_holes, largest_component
from mrbench.preprocessing.params import PreprocessParams
from mrbench.preprocessing.qc import qc_figure, qc_flags
from mrbench.preprocessing.registration import register_t2, resample_to, target_grid
from mrbench.preprocessing.similarity import gradient_ncc, nmi
from mrbench.preprocessing.skullstrip import skull_strip
from mrbench.preprocessing.tissues import segment_tissues
from mrbench.slices import NORMALISATION_RULE, normalise_volume

#: contrasts preprocessing can write: the T1w reference, the registered T2w and volumes of the
#: T2's acquisition moved with it
PREPROCESS_CONTRASTS = ("t1", "t2", "pd")


def preprocess_subject(
    t1_path: str | Path,
    t2_path: str | Path,
    out_dir: str | Path,
    params: PreprocessParams | None = None,
    subject: str | None = None,
    others: Mapping[str, str | Path] | None = None,
    contrasts: Sequence[str] = DEFAULT_PAIR,
) -> dict:
    """Run the whole pipeline for one subject; write ``<contrast>.nii.gz`` for each of
    ``contrasts``, mask, label, qc.png, qc.json; return QC.

    ``others`` (contrast -> path, e.g. ``{"pd": ...}``) are volumes of the T2's acquisition,
    moved by the T2's transform. The T2 is always read and registered (the transform comes from
    it), and written only where ``contrasts`` names it.
    """
    params = params or PreprocessParams()
    out_dir = Path(out_dir)
    subject = subject or out_dir.name
    others = dict(others or {})
    _check_contrasts(contrasts, others)
    start = time.perf_counter()
    t1, t1_aff, t2, t2_aff = _load_pair(t1_path, t2_path)
    extra = {c: _load_other(c, others[c], t2.shape, t2_aff) for c in others}
    qc: dict = {"subject": subject, "t1": str(t1_path), "t2": str(t2_path)}
    qc.update({c: str(path) for c, path in others.items()})
    if extra:  # PD and T2 of one dual-echo scan share the grid; the transform holds regardless
        qc["same_grid_as_t2"] = {c: same for c, (_, _, same) in extra.items()}
    qc["params"] = asdict(params)
    with tempfile.TemporaryDirectory(prefix="mrbench-pre-") as tmp:
        work = Path(tmp)
        # on the acquired grid: the extractor was trained on scans at their own resolution,
        # not on coarse resampled ones
        brain = _brain_mask(t1, t1_aff, t1 > 0, params, qc)
        if params.target_spacing:
            shape, aff = target_grid(t1.shape, t1_aff, params.target_spacing)
            brain = resample_to(brain.astype(np.float32), t1_aff, shape, aff, "linear") > 0.5
            t1 = np.clip(resample_to(t1, t1_aff, shape, aff, "bSpline"), 0, None)
            t1_aff = aff
        spacing = voxel_sizes(t1_aff)
        if not brain.any():
            raise InputError(f"{t1_path}: skull-strip produced an empty brain mask")
        t2_reg, t2_hdr, fov, moved = _register(
            t1, t1_aff, t2, t2_aff, brain, params, work, extra, qc
        )
        if params.n4:
            t1, t2_reg = _n4(t1, t1_aff, brain), _n4(t2_reg, t1_aff, brain & (fov > 0.5))
            moved = {c: _n4(v, t1_aff, brain & (fov > 0.5)) for c, v in moved.items()}
    covered = fov >= params.fov_threshold
    mask = brain & covered
    if not mask.any():
        raise InputError(f"{t2_path}: the T2 field of view does not cover the T1 brain mask")
    qc.update(_mask_qc(t1, t2_hdr, t2_reg, brain, mask, spacing))
    normalised = _normalise_all(t1, t2_reg, moved, mask, others)
    t1n, t2n = normalised["t1"], normalised["t2"]
    out_dir.mkdir(parents=True, exist_ok=True)
    for c in contrasts:
        save_volume(normalised[c].astype(np.float32), t1_aff, out_dir / f"{c}.nii.gz")
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
    _write_qc(qc, subject, out_dir)
    return qc


def _register(
    t1: np.ndarray,
    t1_aff: np.ndarray,
    t2: np.ndarray,
    t2_aff: np.ndarray,
    brain: np.ndarray,
    params: PreprocessParams,
    work: Path,
    extra: Mapping[str, tuple],
    qc: dict,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Register the T2 onto the T1 grid (moving ``extra`` with it) and record the
    registration's QC entry; return the registered T2, its header-only resampling, the field
    of view and the moved volumes (a step of its own so :func:`preprocess_subject` stays short).
    """
    t_reg = time.perf_counter()
    reg = register_t2(
        t1,
        t1_aff,
        t2,
        t2_aff,
        brain,
        params,
        work,
        {c: (v, a) for c, (v, a, _) in extra.items()},
    )
    t2_reg, t2_hdr, fov, timings, moved = reg
    qc["registration"] = {"transform": params.registration, "metric": "Mattes MI", **timings}
    if moved:
        qc["registration"]["moved_with_t2"] = sorted(moved)
    qc["registration"]["seconds"] = round(time.perf_counter() - t_reg, 1)
    return t2_reg, t2_hdr, fov, moved


def _normalise_all(
    t1: np.ndarray,
    t2_reg: np.ndarray,
    moved: Mapping[str, np.ndarray],
    mask: np.ndarray,
    others: Mapping[str, str | Path],
) -> dict[str, np.ndarray]:
    """Every contrast normalised inside the final mask (contrast -> volume); a moved volume
    with no signal inside the mask is an input error naming its file."""
    normalised = {"t1": normalise_volume(t1, mask), "t2": normalise_volume(t2_reg, mask)}
    for c, vol in moved.items():
        if not np.any(vol[mask] > 0):
            raise InputError(f"{others[c]}: no signal inside the brain mask after registration")
        normalised[c] = normalise_volume(vol, mask)
    return normalised


def _check_contrasts(contrasts: Sequence[str], others: Mapping[str, str | Path]) -> None:
    """``contrasts`` among :data:`PREPROCESS_CONTRASTS`, T1 among them, and each contrast other
    than T1/T2 with its input volume (one line naming the first problem)."""
    for c in (*contrasts, *others):
        if c not in PREPROCESS_CONTRASTS:
            raise ValueError(
                f"contrast {c!r}: preprocessing writes {', '.join(PREPROCESS_CONTRASTS)} only"
            )
    if "t1" not in contrasts:
        raise ValueError("contrasts: t1 is the reference of registration and tissue classes")
    for c in contrasts:
        if c not in ("t1", "t2") and c not in others:
            raise ValueError(f"contrast {c}: no input volume given (--{c})")


def _load_other(
    name: str, path: str | Path, t2_shape: tuple[int, ...], t2_aff: np.ndarray
) -> tuple[np.ndarray, np.ndarray, bool]:
    """A volume of the T2's acquisition, reoriented and clipped like the pair; and whether its
    grid is the T2's."""
    data, aff = canonical(load_volume(path))
    np.clip(data, 0, None, out=data)
    if min(data.shape) < 8:
        raise InputError(f"{path}: volume shape {data.shape} is too small to be a brain scan")
    same = data.shape == tuple(t2_shape) and bool(np.allclose(aff, t2_aff, atol=1e-3))
    return data, aff, same


def _load_pair(
    t1_path: str | Path, t2_path: str | Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both volumes reoriented to canonical, negatives clipped; (t1, affine, t2, affine)."""
    t1, t1_aff = canonical(load_volume(t1_path))
    t2, t2_aff = canonical(load_volume(t2_path))
    for path, data in ((t1_path, t1), (t2_path, t2)):
        np.clip(data, 0, None, out=data)  # MR magnitudes; negatives are resampling ringing
        if min(data.shape) < 8:
            raise InputError(f"{path}: volume shape {data.shape} is too small to be a brain scan")
    return t1, t1_aff, t2, t2_aff


def _brain_mask(
    t1: np.ndarray,
    affine: np.ndarray,
    nonzero: np.ndarray,
    params: PreprocessParams,
    qc: dict,
) -> np.ndarray:
    """Brain mask of the T1 (non-zero voxels of a skull-stripped input, else :func:`skull_strip`);
    its method and timing go into ``qc["skull_strip"]``."""
    tic, cpu = time.perf_counter(), time.process_time()
    if params.skull_stripped:
        # on the input grid, so that interpolation ringing outside the brain does not count
        brain = fill_holes(largest_component(nonzero))
        qc["skull_strip"] = {"method": "non-zero voxels of the skull-stripped T1"}
    else:
        brain, info = skull_strip(t1, affine)
        qc["skull_strip"] = {"method": "deepbet brain extraction", **info}
    qc["skull_strip"]["seconds"] = round(time.perf_counter() - tic, 1)
    # CPU seconds of all threads: what the step costs, whatever the machine's load
    qc["skull_strip"]["cpu_seconds"] = round(time.process_time() - cpu, 1)
    return brain


def _mask_qc(
    t1: np.ndarray,
    t2_hdr: np.ndarray,
    t2_reg: np.ndarray,
    brain: np.ndarray,
    mask: np.ndarray,
    spacing: np.ndarray,
) -> dict:
    """Similarity before/after registration inside ``mask``, mask volumes and the output grid."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    box = bbox_slices(mask, 3)
    a, m = t1[box], mask[box]
    return {
        "similarity": {
            "region": "brain mask within the T2 field of view",
            "nmi_header": round(nmi(a, t2_hdr[box], m), 4),
            "nmi_registered": round(nmi(a, t2_reg[box], m), 4),
            "gradient_ncc_header": round(gradient_ncc(a, t2_hdr[box], m, spacing), 4),
            "gradient_ncc_registered": round(gradient_ncc(a, t2_reg[box], m, spacing), 4),
        },
        "brain_volume_ml": round(float(brain.sum()) * voxel_ml, 1),
        "mask_volume_ml": round(float(mask.sum()) * voxel_ml, 1),
        "t2_fov_brain_fraction": round(float(mask.sum() / brain.sum()), 4),
        "grid": {"shape": list(t1.shape), "spacing_mm": [round(float(s), 4) for s in spacing]},
        "normalisation": NORMALISATION_RULE,
    }


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


def _write_qc(qc: dict, subject: str, out_dir: Path) -> None:
    """Flag problems (:func:`qc_flags`, also printed to the job's log) and write ``qc.json``."""
    qc["flags"] = qc_flags(qc)
    for flag in qc["flags"]:  # the job's log
        print(f"QC {subject}: {flag} (see {out_dir / 'qc.png'})", file=sys.stderr, flush=True)
    with atomic_path(out_dir / "qc.json") as tmp:
        tmp.write_text(json.dumps(qc, indent=1))


def _n4(data: np.ndarray, affine: np.ndarray, mask: np.ndarray) -> np.ndarray:
    ants = load_ants()
    img = to_ants(data, affine)
    m = to_ants(mask.astype(np.float32), affine)
    return np.clip(ants.n4_bias_field_correction(img, mask=m, shrink_factor=4).numpy(), 0, None)
