"""IXI: subject selection from the T1/T2 archives, split, and per-subject extraction (T1, T2 and,
where a pair asks for it, PD from ``IXI-PD.tar``).

Subject rule (the paper uses 80 IXI subjects with T1 and T2 but does not list them):

1. Read the member names of ``IXI-T1.tar`` and ``IXI-T2.tar``
   (``IXI<nnn>-<Guys|HH|IOP>-<nnnn>-<T1|T2>.nii.gz``); a subject is ``IXI<nnn>-<site>-<nnnn>``.
2. Keep the subjects present in both archives, drop the known-defective ones
   (:data:`KNOWN_DEFECTIVE`), sort by name (= by IXI number) and take the first 80.
3. Split: 20 test subjects at evenly spaced positions of the sorted 80 (every 4th), the other
   60 are training, of which 6 (10%, evenly spaced) are validation
   (:func:`mrbench.datasets.interleaved_split`).

The rule needs only the archives' file lists (no IXI.xls), so it gives the same split offline
and can be checked by anyone. ``config/splits/ixi.tsv`` is committed: it is the rule applied to
the public file lists of the archives (:func:`split_of_names`; a test recomputes it). A run
never rewrites it: after the download, :func:`check_archives` checks the archives against it
(a listed subject missing, or without T1 or T2, stops the job with one line naming it; other
subjects are counted and ignored). Only where the split file is absent (another
``split_file``) does the ``ixi_split`` checkpoint write it from the downloaded archives,
with the excluded subjects (one modality only, known defects) and their reasons in
``resources/ixi/excluded.tsv``.

PD is read only where a configured pair needs it: the split stays the T1/T2 rule's (the same
for every pair), and with ``IXI-PD.tar`` the check also requires every listed subject's PD (one
line naming those without). PD is the first echo of the T2's dual-echo acquisition, on the T2's
grid: preprocessing moves it with the T2's registration (:mod:`mrbench.preprocessing.pipeline`).

Commands: ``mrbench ixi split``, ``mrbench ixi extract`` and ``mrbench ixi qc`` (used by
``workflow/rules/ixi.smk``).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd

from mrbench.config.schema import dataset_default
from mrbench.datasets import interleaved_split, write_split_file
from mrbench.datasets.archive import list_members, safe_extract
from mrbench.datasets.kind import DatasetKind, register_dataset, split_file_of
from mrbench.datasets.splits import check_archive_against_split
from mrbench.io import InputError, atomic_path

NAME_RE = re.compile(r"^(?P<subject>IXI\d{3}-(?:Guys|HH|IOP)-\d{4})-(?P<mod>T1|T2|PD)\.nii\.gz$")
URL_BASE = "http://biomedic.doc.ic.ac.uk/brain-development/downloads/IXI"
#: md5 of the archives as used by the torchio project (the IXI site publishes none)
MD5 = {
    "T1": "34901a0593b41dd19c1a1f746eac2d58",
    "T2": "e3140d78730ecdd32ba92da48c0a9aaa",
    "PD": "88ecd9d1fa33cb4a2278183b42ffd749",
}
#: subjects whose scans are unusable although present in both archives
KNOWN_DEFECTIVE = {
    "IXI014-HH-1236": "T2 is a truncated acquisition (28 slices of about 5 mm)",
}
#: the paper's 80 subjects, 20 of them for testing (defaults of the config schema)
N_SUBJECTS = dataset_default("ixi", "n_subjects")
N_TEST = dataset_default("ixi", "n_test")
VAL_FRACTION = dataset_default("ixi", "val_fraction")


@register_dataset("ixi")
class IXI(DatasetKind):
    """Downloaded and preprocessed by the rules of ``workflow/rules/ixi.smk``; the subjects are
    those of the split file, which the ``ixi_split`` checkpoint writes from the archives' file
    lists when it is missing."""

    display_name = "IXI"
    acquisition = "rules"
    split_checkpoint = "ixi_split"
    #: PD from IXI-PD.tar: the first echo of the T2's dual-echo acquisition, on the T2's grid
    contrasts = ("t1", "t2", "pd")
    #: T2 (and PD) are registered to the T1, whose tissue classes are segmented
    reference = "t1"

    def subjects(self, dataset: str, settings: dict) -> list[str] | None:
        if not Path(split_file_of(dataset, settings)).exists():
            return None  # chosen from the downloaded archives by the ixi_split checkpoint
        return super().subjects(dataset, settings)


def subjects_in_names(names: list[str], modality: str) -> dict[str, str]:
    """Subject id -> member name for the ``modality`` files among archive member names."""
    out = {}
    for name in names:
        m = NAME_RE.match(Path(name).name)
        if m and m["mod"] == modality:
            out[m["subject"]] = name
    return out


def select_subjects(
    t1_names: list[str],
    t2_names: list[str],
    n_subjects: int = N_SUBJECTS,
    exclude: dict[str, str] | None = None,
) -> tuple[list[str], pd.DataFrame]:
    """The first ``n_subjects`` sorted subjects with T1 and T2; and the excluded ones."""
    exclude = KNOWN_DEFECTIVE if exclude is None else exclude
    t1 = subjects_in_names(t1_names, "T1")
    t2 = subjects_in_names(t2_names, "T2")
    rows = [(s, "T1 only (no T2 in the T2 archive)") for s in sorted(set(t1) - set(t2))]
    rows += [(s, "T2 only (no T1 in the T1 archive)") for s in sorted(set(t2) - set(t1))]
    both = sorted(set(t1) & set(t2))
    rows += [(s, exclude[s]) for s in both if s in exclude]
    usable = [s for s in both if s not in exclude]
    if len(usable) < n_subjects:
        raise InputError(
            f"only {len(usable)} IXI subjects have both T1 and T2 in the archives; "
            f"{n_subjects} are needed"
        )
    excluded = pd.DataFrame(rows, columns=["subject", "reason"]).sort_values("subject")
    return usable[:n_subjects], excluded


def split_of_names(
    t1_names: list[str],
    t2_names: list[str],
    n_subjects: int = N_SUBJECTS,
    n_test: int = N_TEST,
    val_fraction: float = VAL_FRACTION,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The documented split (subject rule, then :func:`interleaved_split`) of the subjects named
    by the archives' member names; and the excluded subjects. ``config/splits/ixi.tsv`` is this
    function applied to the public file lists, so it can be recomputed without the data."""
    subjects, excluded = select_subjects(t1_names, t2_names, n_subjects)
    return interleaved_split(subjects, n_test, val_fraction), excluded


def _tars(
    t1_tar: str | Path | None, t2_tar: str | Path | None, pd_tar: str | Path | None
) -> dict[str, Path]:
    """Modality -> archive for the archives given."""
    given = (("T1", t1_tar), ("T2", t2_tar), ("PD", pd_tar))
    return {mod: Path(tar) for mod, tar in given if tar is not None}


def check_archives(
    t1_tar: str | Path,
    t2_tar: str | Path,
    split_file: str | Path,
    pd_tar: str | Path | None = None,
) -> list[str]:
    """The split's subjects, after checking that the archives hold each one's T1 and T2 (and PD,
    where ``pd_tar`` is given): one line naming those that do not; subjects the split does not
    list are counted and ignored."""
    tars = _tars(t1_tar, t2_tar, pd_tar)
    found: dict[str, set[str]] = {}
    for mod, tar in tars.items():
        for subject in subjects_in_names(list_members(tar), mod):
            found.setdefault(subject, set()).add(mod)
    archives = " + ".join(tar.name for tar in tars.values())
    return check_archive_against_split(found, tuple(tars), split_file, archives)


def make_split(
    t1_tar: str | Path,
    t2_tar: str | Path,
    split_file: str | Path,
    excluded_file: str | Path | None = None,
    n_subjects: int = N_SUBJECTS,
    n_test: int = N_TEST,
    val_fraction: float = VAL_FRACTION,
) -> pd.DataFrame:
    df, excluded = split_of_names(
        list_members(t1_tar), list_members(t2_tar), n_subjects, n_test, val_fraction
    )
    write_split_file(df, split_file)
    if excluded_file is not None:
        with atomic_path(excluded_file) as tmp:
            excluded.to_csv(tmp, sep="\t", index=False)
    for row in excluded.itertuples():
        print(f"excluded {row.subject}: {row.reason}")
    return df


def extract_subject(
    t1_tar: str | Path | None,
    t2_tar: str | Path | None,
    subject: str,
    out_dir: str | Path,
    pd_tar: str | Path | None = None,
) -> dict[str, Path]:
    """Extract one subject's volumes from the archives given (T1, T2, PD) to
    ``out_dir/{t1,t2,pd}.nii.gz``."""
    out_dir = Path(out_dir)
    tars = _tars(t1_tar, t2_tar, pd_tar)
    if not tars:
        raise ValueError("extract: give at least one of the T1, T2 and PD archives")
    got = {}
    for mod, tar in tars.items():
        want = f"{subject}-{mod}.nii.gz"
        files = safe_extract(tar, out_dir / ".x", include=lambda n, w=want: Path(n).name == w)
        if not files:
            shutil.rmtree(out_dir / ".x", ignore_errors=True)
            raise InputError(f"{tar}: no member named {want} (subject {subject} lacks {mod})")
        final = out_dir / f"{mod.lower()}.nii.gz"
        files[0].replace(final)
        got[mod.lower()] = final
    shutil.rmtree(out_dir / ".x", ignore_errors=True)
    return got


def qc_table(qc_files: list[str | Path], out: str | Path) -> pd.DataFrame:
    """One row per subject from the ``qc.json`` files, with a ``flag`` naming any problem.

    Flags (:func:`mrbench.preprocessing.qc.qc_flags`): brain volume outside the adult range, a
    registration that barely moved the similarity, T2 field of view covering less than 90% of the
    brain; and (:func:`~mrbench.preprocessing.qc.dataset_flags`) a registered similarity far
    below the dataset's median. Tissue class volumes (``csf_ml``, ``gm_ml``, ``wm_ml``) are
    listed where preprocessing wrote them. Flagged subjects are printed (the log).
    """
    from mrbench.preprocessing.qc import dataset_flags, qc_flags

    rows = []
    records = [json.loads(Path(f).read_text()) for f in qc_files]
    relative = dataset_flags(records)
    for q in records:
        sim = q["similarity"]
        flags = qc_flags(q) + relative.get(q["subject"], [])
        rows.append(
            {
                "subject": q["subject"],
                "brain_volume_ml": q["brain_volume_ml"],
                "mask_volume_ml": q["mask_volume_ml"],
                **{k: v for k, v in sim.items() if k != "region"},
                # tissue class volumes (label.nii.gz, Atropos), when preprocessing wrote them
                **{
                    f"{name}_ml": v for name, v in q.get("tissue", {}).get("volumes_ml", {}).items()
                },
                "seconds": q["seconds"],
                "flag": "; ".join(flags) or "ok",
            }
        )
    df = pd.DataFrame(rows).sort_values("subject")
    with atomic_path(out) as tmp:
        df.to_csv(tmp, sep="\t", index=False)
    for row in df.itertuples():
        if row.flag != "ok":
            print(f"QC {row.subject}: {row.flag} (see its qc.png)")
    print(f"wrote {out}: {len(df)} subjects, {int((df['flag'] != 'ok').sum())} flagged")
    return df
