"""Medical Segmentation Decathlon Task01_BrainTumour: the public stand-in for BraTS (``msd_brats``).

``Task01_BrainTumour.tar`` (md5 ``240a19d752f0d9e9101544901065d872``, CC-BY-SA 4.0, from
BraTS 2016/17) holds ``imagesTr/BRATS_<nnn>.nii.gz``: one 4D volume per case,
240x240x155x4, channels 0 FLAIR, 1 T1w, 2 T1gd, 3 T2w, skull-stripped and co-registered. The
import takes the channels of the contrasts the dataset needs (:data:`CHANNELS`: T1 and T2 by
default; T1ce is the T1gd channel; T1 always, for the tissue classes) and follows the BraTS path
(reorient, non-zero mask, normalisation, same layout); a case whose needed channel is all zero
stops the import with one line naming it. The split uses the BraTS rule (7:3, 10% of train as
val).
The archive also contains macOS ``._*`` resource files, which are ignored. The tumour labels of
``labelsTr/BRATS_<nnn>.nii.gz`` become class 4 of the tissue map (``label.nii.gz``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from mrbench.datasets import import_cases, import_volumes
from mrbench.datasets.archive import safe_extract
from mrbench.datasets.kind import ImportedDatasetKind, register_dataset
from mrbench.domain import CONTRASTS, DEFAULT_PAIR
from mrbench.io import InputError, check_output_dir, load_volume
from mrbench.pairs import contrasts_of

URL = "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task01_BrainTumour.tar"
MD5 = "240a19d752f0d9e9101544901065d872"
#: channel of each contrast in the 4D volumes (T1gd is BraTS's T1ce)
CHANNELS = {"flair": 0, "t1": 1, "t1ce": 2, "t2": 3}
CASE_RE = re.compile(r"^(?P<case>BRATS_\d+)\.nii\.gz$")
TEST_FRACTION = 0.3
VAL_FRACTION = 0.1


def _wanted(name: str) -> bool:
    p = Path(name)
    return p.parent.name in ("imagesTr", "labelsTr") and CASE_RE.match(p.name) is not None


def _seg_of(image: Path) -> np.ndarray | None:
    """The case's tumour labels (``labelsTr/<case>.nii.gz`` beside ``imagesTr``), if present."""
    path = image.parent.parent / "labelsTr" / image.name
    if not path.exists():
        return None
    return np.asarray(load_volume(path).dataobj)


def find_cases(folder: str | Path) -> dict[str, Path]:
    cases = {}
    for path in sorted(Path(folder).rglob("imagesTr/*.nii.gz")):
        m = CASE_RE.match(path.name)
        if m:
            cases[m["case"]] = path
    if not cases:
        raise InputError(f"{folder}: no imagesTr/BRATS_<nnn>.nii.gz volumes found")
    return cases


def _import_case(path: Path, out_dir: Path, contrasts: Sequence[str] = DEFAULT_PAIR) -> dict:
    img = load_volume(path, ndim=4)
    if img.shape[3] <= max(CHANNELS.values()):
        raise InputError(f"{path}: expected 4 channels (FLAIR, T1w, T1gd, T2w), got {img.shape}")
    data = np.asarray(img.dataobj)
    volumes = {c: data[..., CHANNELS[c]] for c in contrasts}
    for c, v in volumes.items():
        if not np.any(v):
            raise InputError(f"{path}: channel {CHANNELS[c]} ({CONTRASTS[c]}) is all zero")
    return import_volumes(
        volumes,
        img.affine,
        out_dir,
        {c: f"{path}[{CONTRASTS[c]}]" for c in contrasts},
        seg=_seg_of(path),
    )


def import_msd(
    source: str | Path,
    out_root: str | Path,
    split_file: str | Path,
    workdir: str | Path = "resources/msd_brats",
    jobs: int = 1,
    limit: int | None = None,
    overwrite: bool = False,
    contrasts: Sequence[str] = DEFAULT_PAIR,
) -> dict:
    """Import the training cases (all, or the first ``limit`` sorted ones), their ``contrasts``
    (and T1, the tissue classes' reference), and write the split.

    A non-empty ``out_root`` that no earlier import wrote is refused before any work (unless
    ``overwrite``): the import replaces the whole folder."""
    unknown = sorted(set(contrasts) - set(CHANNELS))
    if unknown:
        raise ValueError(f"MSD Task01 offers {', '.join(CHANNELS)}, not {unknown}")
    contrasts = contrasts_of([("t1", *contrasts)])
    check_output_dir(out_root, "subjects", overwrite)
    source = Path(source)
    if not source.exists():
        raise InputError(f"{source}: MSD archive or folder not found")
    folder = source
    if not source.is_dir():
        folder = Path(workdir) / "raw"
        safe_extract(source, folder, include=_wanted)
    cases = find_cases(folder)
    ids = sorted(cases)[:limit] if limit else sorted(cases)
    fractions = (TEST_FRACTION, VAL_FRACTION)
    chosen = {c: cases[c] for c in ids}
    import_case = partial(_import_case, contrasts=contrasts)
    import_cases(chosen, import_case, out_root, split_file, jobs, fractions, overwrite)
    return {"n_cases": len(ids), "folder": str(folder)}


@register_dataset("msd_brats")
class MSDBrainTumour(ImportedDatasetKind):
    """Imported at once by its own rule (``workflow/rules/msd.smk``)."""

    display_name = "MSD brain tumour"
    contrasts = ("t1", "t1ce", "t2", "flair")
    #: the tissue classes are segmented from the T1w
    reference = "t1"
