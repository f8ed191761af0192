"""Real datasets: subject selection, published splits and import into the benchmark layout.

Every dataset ends in the same layout, which the generic slice-store rule consumes::

    results/data/<dataset>/subjects/<subject>/{<contrast>,mask,label}.nii.gz
    config/splits/<dataset>.tsv     (subject, split)

IXI (:mod:`.ixi`) goes through the full preprocessing (skull-strip, registration); BraTS 2018
(:mod:`.brats`) and the MSD brain-tumour task (:mod:`.msd`) are already skull-stripped and
co-registered, so their import only reorients, masks and normalises (:func:`import_volumes`),
each needed contrast (those of the dataset's pairs, and the T1w for the tissue classes).

Splits are made by :func:`interleaved_split`: deterministic, no random generator, and spread
evenly over the sorted ids (which group subjects by site or cohort), so that no split is one
site only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mrbench.datasets.splits import write_splits
from mrbench.io import InputError, save_volume, staged_dir
from mrbench.slices import normalise_volume


def _evenly_spaced(n: int, k: int) -> list[int]:
    """``k`` positions out of ``range(n)``, evenly spaced (centres of ``k`` equal blocks)."""
    return sorted({int((j + 0.5) * n / k) for j in range(k)}) if k > 0 else []


def interleaved_split(ids: Iterable[str], n_test: int, val_fraction: float = 0.1) -> pd.DataFrame:
    """Deterministic subject split of the sorted ``ids``.

    Test: ``n_test`` subjects at evenly spaced positions of the sorted list. Validation:
    ``round(val_fraction * n_train_pool)`` subjects at evenly spaced positions of the remaining
    (sorted) list. The rest is training.
    """
    ids = sorted(set(ids))
    n = len(ids)
    if n < 3 or not 0 < n_test < n - 1:
        raise ValueError(f"cannot split {n} subjects with {n_test} test subjects")
    test_pos = set(_evenly_spaced(n, n_test))
    pool = [s for i, s in enumerate(ids) if i not in test_pos]
    n_val = max(1, round(val_fraction * len(pool))) if val_fraction > 0 else 0
    val = {pool[i] for i in _evenly_spaced(len(pool), n_val)}
    split = [
        "test" if i in test_pos else ("val" if s in val else "train") for i, s in enumerate(ids)
    ]
    return pd.DataFrame({"subject": ids, "split": split})


def fraction_split(ids: Iterable[str], test_fraction: float, val_fraction: float) -> pd.DataFrame:
    ids = sorted(set(ids))
    return interleaved_split(ids, round(test_fraction * len(ids)), val_fraction)


def write_split_file(df: pd.DataFrame, path: str | Path) -> Path:
    out = write_splits(df, path)
    counts = df["split"].value_counts().to_dict()
    print(f"wrote {out}: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("train", "val", "test")))
    return out


def brain_mask_nonzero(*volumes: np.ndarray) -> np.ndarray:
    """Mask of skull-stripped data: voxels non-zero in every volume, largest component, filled."""
    from scipy import ndimage

    mask = np.ones(volumes[0].shape, dtype=bool)
    for v in volumes:
        mask &= v != 0
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == int(np.argmax(sizes))
    return ndimage.binary_fill_holes(mask)


def import_volumes(
    volumes: Mapping[str, np.ndarray],
    affine: np.ndarray,
    out_dir: Path,
    names: Mapping[str, str] | None = None,
    seg: np.ndarray | None = None,
    tissues: bool = True,
) -> dict:
    """Reorient, mask (non-zero), normalise and write co-registered skull-stripped volumes
    (contrast -> array, all on the grid of ``affine``) as ``out_dir/<contrast>.nii.gz``.

    The mask is the voxels non-zero in every volume (:func:`brain_mask_nonzero`). With
    ``tissues`` also ``label.nii.gz``: CSF/GM/WM classes of the T1w
    (:func:`mrbench.preprocessing.tissues.segment_tissues`) and, where the archive has a tumour
    segmentation ``seg`` on the same grid, its non-zero voxels as class 4 (tumour). ``names``
    (contrast -> file name) name the inputs in errors.
    """
    import nibabel as nib

    names = {c: (names or {}).get(c, c) for c in volumes}
    first = next(iter(volumes))
    if tissues and "t1" not in volumes:
        raise ValueError("import: tissue classes are segmented from the T1w, which is not given")
    for c, v in volumes.items():
        if v.shape != volumes[first].shape:
            raise InputError(
                f"{names[c]}: shape {v.shape} differs from {names[first]} {volumes[first].shape}"
            )
    imgs = {
        c: nib.as_closest_canonical(nib.Nifti1Image(np.asarray(v, np.float32), affine))
        for c, v in volumes.items()
    }
    arrays = {c: np.asarray(img.dataobj) for c, img in imgs.items()}
    mask = brain_mask_nonzero(*arrays.values())
    if not mask.any():
        raise InputError(f"{names[first]}: no voxel is non-zero in all volumes")
    # negative values in BraTS-like data are interpolation ringing: MR magnitudes are >= 0
    out_affine = imgs[first].affine
    out_dir.mkdir(parents=True, exist_ok=True)
    normalised = {}
    for c, a in arrays.items():
        normalised[c] = normalise_volume(np.clip(a, 0, None), mask)
        save_volume(normalised[c], out_affine, out_dir / f"{c}.nii.gz")
    save_volume(mask.astype(np.uint8), out_affine, out_dir / "mask.nii.gz")
    zooms = np.sqrt((out_affine[:3, :3] ** 2).sum(0))
    info: dict = {
        "shape": list(mask.shape),
        "mask_volume_ml": round(float(mask.sum() * np.prod(zooms)) / 1000, 1),
    }
    if tissues:
        info.update(
            _import_tissues(normalised["t1"], mask, out_affine, affine, seg, names["t1"], out_dir)
        )
    return info


def _import_tissues(
    t1n: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    raw_affine: np.ndarray,
    seg: np.ndarray | None,
    name: str,
    out_dir: Path,
) -> dict:
    """Tissue classes (and the tumour of ``seg``) of an imported pair -> ``label.nii.gz``."""
    import nibabel as nib

    from mrbench.preprocessing.tissues import segment_tissues, tissue_qc, tumour_labels

    labels, info = segment_tissues(t1n, mask, affine)
    if seg is not None:
        if seg.shape != mask.shape:
            raise InputError(f"{name}: tumour segmentation shape {seg.shape} differs from the T1's")
        seg_img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(seg, np.float32), raw_affine))
        labels = tumour_labels(labels, np.asarray(seg_img.dataobj), mask)
        info = tissue_qc(labels, t1n, affine, info["method"] + "; tumour from the archive's seg")
    save_volume(labels, affine, out_dir / "label.nii.gz")
    return {f"{k}_ml": v for k, v in info["volumes_ml"].items()}


def build_subject_folder(
    cases: list[str],
    worker: Callable[[str, Path], dict],
    out_root: str | Path,
    jobs: int = 1,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Run ``worker(case, folder)`` for every case into a staging folder, then swap it in.

    The whole ``out_root`` appears at once (Snakemake ``directory()`` output), never half
    written. Errors of individual cases are collected and reported together in one line. An
    existing ``out_root`` holding files no earlier import wrote is refused unless ``overwrite``
    (:func:`mrbench.io.staged_dir`): a user's folder is never emptied.
    """
    rows, errors = [], []
    with staged_dir(out_root, "subjects", overwrite) as staging:
        results = {}
        if jobs > 1:
            with ProcessPoolExecutor(jobs) as pool:
                futures = {c: pool.submit(worker, c, staging / c) for c in cases}
                for c, f in futures.items():
                    try:
                        results[c] = f.result()
                    except InputError as exc:
                        errors.append(str(exc))
        else:
            for c in cases:
                try:
                    results[c] = worker(c, staging / c)
                except InputError as exc:
                    errors.append(str(exc))
        if errors:
            raise InputError(f"{len(errors)} case(s) failed to import: " + "; ".join(errors))
        for c in cases:
            rows.append({"subject": c, **results[c]})
        table = pd.DataFrame(rows)
        table.to_csv(staging / "import.tsv", sep="\t", index=False)
        (staging / "import.json").write_text(json.dumps({"n_subjects": len(cases)}))
    return table


class CaseWorker:
    """Picklable per-case worker for :func:`build_subject_folder`'s process pool: runs
    ``import_case(cases[case], out_dir)`` (``import_case`` a module-level function)."""

    def __init__(self, cases: Mapping[str, Any], import_case: Callable[[Any, Path], dict]) -> None:
        self.cases = cases
        self.import_case = import_case

    def __call__(self, case: str, out_dir: Path) -> dict:
        return self.import_case(self.cases[case], out_dir)


def import_cases(
    cases: Mapping[str, Any],
    import_case: Callable[[Any, Path], dict],
    out_root: str | Path,
    split_file: str | Path,
    jobs: int,
    fractions: tuple[float, float],
    overwrite: bool = False,
) -> pd.DataFrame:
    """Import every case of an archive into ``out_root/<case>/`` (:func:`build_subject_folder`
    with ``import_case(cases[case], folder)``) and write the split file of the sorted case ids
    (:func:`fraction_split` with ``fractions`` = (test, validation)); the import table."""
    ids = sorted(cases)
    table = build_subject_folder(ids, CaseWorker(cases, import_case), out_root, jobs, overwrite)
    write_split_file(fraction_split(ids, *fractions), split_file)
    return table
