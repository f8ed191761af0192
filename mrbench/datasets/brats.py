"""BraTS 2018 import from the archive or folder a user received from the organisers.

BraTS 2018 has no public download, so the workflow reads ``datasets.brats2018.source``: a
``.zip``, ``.tar``/``.tar.gz`` or a folder, laid out as released
(``MICCAI_BraTS_2018_Data_Training/{HGG,LGG}/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz``) or
flat; any nesting is accepted as long as the file names follow
``<case>_<modality>.nii[.gz]``. Every case needs the contrasts the dataset's pairs ask for and
``t1`` (the tissue classes are segmented from it): ``t1`` and ``t2`` by default, ``t1ce`` and
``flair`` where a pair names them; a missing file is reported together with all other missing
files in one message.

The volumes are already skull-stripped and co-registered (SRI24, 1 mm), so the import skips
skull-stripping and registration; it reorients to RAS, builds the mask from the non-zero voxels
and applies the benchmark's normalisation (:func:`mrbench.datasets.import_volumes`). Tissue
classes (CSF/GM/WM by Atropos on the T1w) are written as ``label.nii.gz``; where a case has its
``seg`` file, the tumour (any non-zero label) becomes class 4.

Split: ``config/splits/brats2018.tsv`` is committed: the 285 training cases of the public case
list, 7:3 train/test and 10% of train as validation, stratified by grade (:func:`grade_split`;
a test recomputes it). The import checks the archive against it and never rewrites it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from mrbench import domain
from mrbench.datasets import (
    CaseWorker,
    build_subject_folder,
    import_cases,
    import_volumes,
    interleaved_split,
)
from mrbench.datasets.archive import safe_extract
from mrbench.datasets.kind import ImportedDatasetKind, register_dataset
from mrbench.datasets.splits import check_archive_against_split
from mrbench.io import InputError, check_output_dir, load_volume
from mrbench.pairs import contrasts_of

MODALITIES = ("t1", "t1ce", "t2", "flair", "seg")
#: the contrasts imported by default (the default pair)
REQUIRED = domain.DEFAULT_PAIR
NAME_RE = re.compile(r"^(?P<case>.+)_(?P<mod>t1|t1ce|t2|flair|seg)\.nii(\.gz)?$", re.IGNORECASE)
TEST_FRACTION = 0.3
VAL_FRACTION = 0.1


def _is_volume(name: str) -> bool:
    base = Path(name).name
    return not base.startswith("._") and NAME_RE.match(base) is not None


def prepare_source(
    source: str | Path, workdir: str | Path, contrasts: Sequence[str] = REQUIRED
) -> Path:
    """A folder with the case files: ``source`` itself, or ``source`` extracted into ``workdir``.

    Only the ``contrasts`` and the tumour segmentation are extracted.
    """
    source = Path(source)
    if not source.exists():
        raise InputError(f"{source}: BraTS source not found (config datasets.brats2018.source)")
    if source.is_dir():
        return source
    dest = Path(workdir) / "raw"

    def wanted(name: str) -> bool:
        m = NAME_RE.match(Path(name).name)
        return _is_volume(name) and m is not None and m["mod"].lower() in (*contrasts, "seg")

    safe_extract(source, dest, include=wanted)
    return dest


def find_cases(
    folder: str | Path, complete: bool = True, contrasts: Sequence[str] = REQUIRED
) -> dict[str, dict[str, Path]]:
    """Case id -> modality -> file; with ``complete``, raise one error listing every case
    lacking one of ``contrasts`` (without, the caller checks the cases it needs)."""
    folder = Path(folder)
    cases: dict[str, dict[str, Path]] = {}
    dupes = []
    for path in sorted(folder.rglob("*.nii*")):
        if not _is_volume(path.name):
            continue
        m = NAME_RE.match(path.name)
        case, mod = m["case"], m["mod"].lower()
        if mod in cases.setdefault(case, {}):
            dupes.append(f"{case}_{mod} ({cases[case][mod]} and {path})")
        cases[case][mod] = path
    if dupes:
        raise InputError(f"{folder}: duplicate case files: " + "; ".join(dupes[:10]))
    if not cases:
        raise InputError(
            f"{folder}: no BraTS volumes found (expected <case>_<t1|t1ce|t2|flair|seg>.nii.gz)"
        )
    missing = [
        f"{case} ({', '.join(r for r in contrasts if r not in mods)})"
        for case, mods in sorted(cases.items())
        if any(r not in mods for r in contrasts)
    ]
    if missing and complete:
        raise InputError(
            f"{folder}: {len(missing)} case(s) lack required files: " + "; ".join(missing)
        )
    return cases


def _import_case(
    case_files: dict[str, Path], out_dir: Path, contrasts: Sequence[str] = REQUIRED
) -> dict:
    """One case's ``contrasts`` (all on one grid), mask, tissue classes and tumour."""
    missing = [c for c in contrasts if c not in case_files]
    if missing:
        some = next(iter(case_files.values()))
        case = NAME_RE.match(some.name)["case"]
        raise InputError(f"{some.parent}: case {case} lacks {', '.join(missing)}")
    imgs = {c: load_volume(case_files[c]) for c in contrasts}
    first = contrasts[0]
    ref = imgs[first]
    for c, img in imgs.items():
        if img.shape != ref.shape or not np.allclose(img.affine, ref.affine, atol=1e-3):
            raise InputError(
                f"{case_files[c]}: grid differs from {case_files[first].name} "
                "(BraTS volumes must be co-registered on one grid)"
            )
    seg = None
    if "seg" in case_files:  # the tumour labels, carried as class 4 of label.nii.gz
        seg_img = load_volume(case_files["seg"])
        if seg_img.shape != ref.shape:
            raise InputError(f"{case_files['seg']}: shape {seg_img.shape} differs from the T1's")
        seg = np.asarray(seg_img.dataobj)
    return import_volumes(
        {c: np.asarray(img.dataobj) for c, img in imgs.items()},
        ref.affine,
        out_dir,
        {c: str(case_files[c]) for c in contrasts},
        seg=seg,
    )


def grade_split(grades: Mapping[str, str]) -> pd.DataFrame:
    """The committed BraTS 2018 split, stratified by grade: within each grade (HGG, LGG), the
    sorted case ids are split by :func:`mrbench.datasets.interleaved_split` with
    ``round_half_up(0.3 * n)`` test cases at evenly spaced positions and ``round(0.1 * rest)``
    validation cases among the others; the grades' tables are joined and sorted by case id.
    No random generator: the same list always gives the same file."""
    by_grade: dict[str, list[str]] = {}
    for case, grade in grades.items():
        by_grade.setdefault(grade, []).append(case)
    parts = []
    for grade in sorted(by_grade):
        ids = sorted(by_grade[grade])
        n_test = int(math.floor(TEST_FRACTION * len(ids) + 0.5 + 1e-9))
        parts.append(interleaved_split(ids, n_test, VAL_FRACTION))
    return pd.concat(parts).sort_values("subject").reset_index(drop=True)


def import_brats(
    source: str | Path,
    out_root: str | Path,
    split_file: str | Path,
    workdir: str | Path = "resources/brats2018",
    jobs: int = 1,
    overwrite: bool = False,
    contrasts: Sequence[str] = REQUIRED,
) -> dict:
    """Validate and import the cases' ``contrasts`` (with ``t1``, the tissue classes'
    reference) into ``out_root/<case>/``.

    With an existing ``split_file`` (the committed one), the archive is checked against it
    (:func:`mrbench.datasets.splits.check_archive_against_split`: listed cases missing or
    incomplete stop the import with one line; other cases are counted and ignored), only the
    listed cases are imported and the file is never rewritten. Without one (another release),
    every case is imported and a split of the sorted ids is written
    (:func:`mrbench.datasets.fraction_split`, not stratified: the grade is not known).
    A non-empty ``out_root`` that no earlier import wrote is refused before any work (unless
    ``overwrite``): the import replaces the whole folder."""
    unknown = sorted(set(contrasts) - set(BraTS2018.contrasts))
    contrasts = contrasts_of([("t1", *contrasts)])
    if unknown:
        raise ValueError(f"BraTS 2018 offers {', '.join(BraTS2018.contrasts)}, not {unknown}")
    check_output_dir(out_root, "subjects", overwrite)
    folder = prepare_source(source, workdir, contrasts)
    import_case = partial(_import_case, contrasts=contrasts)
    if Path(split_file).exists():
        cases = find_cases(folder, complete=False, contrasts=contrasts)
        found = {case: set(mods) for case, mods in cases.items()}
        listed = check_archive_against_split(found, contrasts, split_file, source)
        worker = CaseWorker({c: cases[c] for c in listed}, import_case)
        table = build_subject_folder(listed, worker, out_root, jobs, overwrite)
        return {"n_cases": len(listed), "folder": str(folder), "table": table}
    cases = find_cases(folder, contrasts=contrasts)
    ids = sorted(cases)
    if len(ids) < 3:
        raise InputError(f"{folder}: only {len(ids)} case(s); a train/val/test split needs 3")
    fractions = (TEST_FRACTION, VAL_FRACTION)
    table = import_cases(cases, import_case, out_root, split_file, jobs, fractions, overwrite)
    return {"n_cases": len(ids), "folder": str(folder), "table": table}


@register_dataset("brats2018")
class BraTS2018(ImportedDatasetKind):
    """Imported at once by its own rule (``workflow/rules/brats.smk``)."""

    display_name = "BraTS 2018"
    contrasts = ("t1", "t1ce", "t2", "flair")
    #: the tissue classes are segmented from the T1w
    reference = "t1"
