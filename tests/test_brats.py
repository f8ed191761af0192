"""BraTS 2018 and MSD import, IXI subject rule and splits.

The BraTS-like case of ../shared/testdata is arranged at test time (symlinks in a temporary
folder, BraTS 2018 file names) and must reach the slice store. Skipped with a reason where the
shared test data are absent.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import qc_record, write_tar

from mrbench.cli import main
from mrbench.datasets import interleaved_split
from mrbench.datasets.brats import find_cases, import_brats
from mrbench.datasets.ixi import extract_subject, make_split, select_subjects
from mrbench.io import InputError
from mrbench.slices import SliceStore, SubjectVolumes, build_split

SHARED = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "brats_like"
needs_data = pytest.mark.skipif(
    not (SHARED / "case01_t1.nii.gz").exists(),
    reason=f"BraTS-like test case not found at {SHARED} (a fresh clone without ../shared)",
)
CASES = ["Brats18_TCIA01_001_1", "Brats18_2013_3_1", "Brats18_CBICA_AAA_1"]
MODS = {"t1": "t1", "t1ce": "t1c", "t2": "t2", "flair": "flair"}


def _arrange(root: Path, cases: list[str], drop: dict[str, list[str]] | None = None) -> Path:
    """BraTS 2018 release layout with symlinks to the shared case (never copied into the repo)."""
    drop = drop or {}
    for i, case in enumerate(cases):
        grade = "HGG" if i % 2 == 0 else "LGG"
        d = root / "MICCAI_BraTS_2018_Data_Training" / grade / case
        d.mkdir(parents=True)
        for mod, src in MODS.items():
            if mod not in drop.get(case, []):
                (d / f"{case}_{mod}.nii.gz").symlink_to(SHARED / f"case01_{src}.nii.gz")
    return root


@needs_data
def test_brats_import_reaches_slice_store(tmp_path: Path) -> None:
    src = _arrange(tmp_path / "src", CASES)
    out = tmp_path / "results" / "data" / "brats2018" / "subjects"
    split_file = tmp_path / "splits" / "brats2018.tsv"
    args = ["--source", str(src), "--out", str(out), "--splits", str(split_file)]
    assert main(["import-brats", *args, "--workdir", str(tmp_path / "work")]) == 0
    df = pd.read_csv(split_file, sep="\t")
    assert sorted(df["subject"]) == sorted(CASES)
    assert set(df["split"]) == {"train", "val", "test"}
    case = "Brats18_TCIA01_001_1"
    t1 = nib.load(str(out / case / "t1.nii.gz"))
    mask = np.asarray(nib.load(str(out / case / "mask.nii.gz")).dataobj)
    raw = nib.load(str(SHARED / "case01_t1.nii.gz"))
    # reoriented to RAS (the source is LPS), same voxel count, normalised into [0, 1]
    assert nib.aff2axcodes(t1.affine) == ("R", "A", "S")
    assert nib.aff2axcodes(raw.affine) != ("R", "A", "S")
    assert t1.shape == raw.shape
    data = t1.get_fdata()
    assert data.min() >= 0 and data.max() <= 1 and not data[mask == 0].any()
    # the mask is the brain (non-zero voxels): a plausible brain volume in ml
    assert 900 < mask.sum() / 1000 < 1900
    # reorientation flipped x and y: the mask is the source's non-zero voxels, flipped (up to
    # a few voxels of hole filling)
    src_nonzero = np.asarray(raw.dataobj)[::-1, ::-1, :] != 0
    assert ((mask > 0) != src_nonzero).mean() < 1e-4
    train = [s for s, sp in zip(df["subject"], df["split"], strict=True) if sp == "train"]
    store_dir = build_split(
        [SubjectVolumes.in_dir(s, out / s) for s in train],
        tmp_path / "slices" / "train",
        size=32,
        slices_per_subject=4,
    )
    store = SliceStore(store_dir)
    assert len(store) == 4 * len(train)
    item = store[0]
    assert item["a"].shape == (1, 32, 32) and item["b"].shape == (1, 32, 32)
    assert float(item["a"].max()) > -1 and float(item["b"].max()) > -1


@needs_data
def test_brats_archive_and_missing_files_reported_at_once(tmp_path: Path, capsys) -> None:
    src = _arrange(tmp_path / "src", CASES[:3], drop={CASES[0]: ["t2"], CASES[2]: ["t1", "t2"]})
    with pytest.raises(InputError) as err:
        find_cases(src)
    msg = str(err.value)
    assert "\n" not in msg
    assert "2 case(s) lack required files" in msg
    assert f"{CASES[0]} (t2)" in msg and f"{CASES[2]} (t1, t2)" in msg
    # the same data as a .tar.gz archive (small copies, to keep the test fast)
    small = tmp_path / "small"
    small.mkdir()
    for m in ("t1", "t2"):
        img = nib.load(str(SHARED / f"case01_{m}.nii.gz"))
        aff = img.affine.copy()
        aff[:3, :3] *= 4
        nib.save(
            nib.Nifti1Image(np.asarray(img.dataobj)[::4, ::4, ::4], aff),
            str(small / f"case01_{m}.nii.gz"),
        )
    archive = tmp_path / "brats.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for case in CASES:
            for m in ("t1", "t2"):
                tf.add(
                    small / f"case01_{m}.nii.gz",
                    arcname=f"MICCAI_BraTS_2018_Data_Training/HGG/{case}/{case}_{m}.nii.gz",
                )
    info = import_brats(archive, tmp_path / "subjects", tmp_path / "b.tsv", tmp_path / "work")
    assert info["n_cases"] == 3
    assert sorted(p.name for p in (tmp_path / "subjects").iterdir() if p.is_dir()) == sorted(CASES)
    # a missing-file archive fails through the CLI with one line
    args = ["--source", str(src), "--out", str(tmp_path / "o2"), "--splits"]
    assert main(["import-brats", *args, str(tmp_path / "c.tsv")]) == 1
    err_line = capsys.readouterr().err.strip()
    assert err_line.count("\n") == 0 and "lack required files" in err_line
    assert not (tmp_path / "o2").exists() and not (tmp_path / "c.tsv").exists()


def test_split_rules_are_deterministic_and_balanced() -> None:
    ids = [f"Brats18_X_{i:03d}_1" for i in range(285)]
    df = interleaved_split(ids, round(0.3 * 285), 0.1)
    counts = df["split"].value_counts()
    assert counts["test"] == 86 and counts["val"] == 20 and counts["train"] == 179
    assert df.equals(interleaved_split(list(reversed(ids)), 86, 0.1))
    # test subjects spread over the sorted list (not one block)
    pos = np.flatnonzero(df["split"] == "test")
    assert pos.min() < 10 and pos.max() > 275


def _ixi_tar(path: Path, subjects: list[str], mod: str) -> Path:
    return write_tar(path, [(f"{s}-{mod}.nii.gz", b"\x1f\x8b" + s.encode()) for s in subjects])


def test_ixi_subject_rule(tmp_path: Path, capsys) -> None:
    sites = ["Guys", "HH", "IOP"]
    both = [f"IXI{i:03d}-{sites[i % 3]}-{1000 + i}" for i in range(2, 100)]
    t1_only, t2_only = "IXI116-Guys-0739", "IXI580-IOP-1157"
    t1 = _ixi_tar(tmp_path / "IXI-T1.tar", both + [t1_only], "T1")
    t2 = _ixi_tar(tmp_path / "IXI-T2.tar", both + [t2_only], "T2")
    split = tmp_path / "ixi.tsv"
    df = make_split(t1, t2, split, tmp_path / "excluded.tsv")
    assert len(df) == 80 and df["split"].value_counts().to_dict() == {
        "train": 54,
        "test": 20,
        "val": 6,
    }
    assert sorted(df["subject"]) == sorted(both)[:80]
    ex = pd.read_csv(tmp_path / "excluded.tsv", sep="\t")
    assert set(ex["subject"]) == {t1_only, t2_only}
    assert "excluded IXI116-Guys-0739: T1 only" in capsys.readouterr().out
    sel, excl = select_subjects(
        [f"{s}-T1.nii.gz" for s in ["IXI014-HH-1236"] + both],
        [f"{s}-T2.nii.gz" for s in ["IXI014-HH-1236"] + both],
    )
    assert "IXI014-HH-1236" not in sel and "IXI014-HH-1236" in set(excl["subject"])
    got = extract_subject(t1, t2, both[0], tmp_path / "raw" / both[0])
    assert got["t1"].read_bytes().endswith(both[0].encode())
    with pytest.raises(InputError, match="lacks T2"):
        extract_subject(t1, t2, t1_only, tmp_path / "raw" / t1_only)
    with pytest.raises(InputError, match="only 2 IXI subjects"):
        select_subjects([f"{s}-T1.nii.gz" for s in both[:2]], [f"{s}-T2.nii.gz" for s in both[:2]])


@needs_data
def test_msd_import(tmp_path: Path) -> None:
    """A 4D MSD-style case (FLAIR, T1w, T1gd, T2w channels) imports with channels 1 and 3."""
    from mrbench.datasets.msd import import_msd

    t1 = nib.load(str(SHARED / "case01_t1.nii.gz"))
    vols = [
        np.asarray(nib.load(str(SHARED / f"case01_{m}.nii.gz")).dataobj, np.float32)
        for m in ("flair", "t1", "t1c", "t2")
    ]
    data = np.stack(vols, -1)[::4, ::4, ::4]  # small: 60x60x39x4
    aff = t1.affine.copy()
    aff[:3, :3] *= 4
    folder = tmp_path / "Task01_BrainTumour" / "imagesTr"
    folder.mkdir(parents=True)
    for i in range(4):
        nib.save(nib.Nifti1Image(data, aff), str(folder / f"BRATS_{i + 1:03d}.nii.gz"))
    (folder / "._BRATS_001.nii.gz").write_bytes(b"\x00resource fork")
    archive = tmp_path / "Task01_BrainTumour.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(tmp_path / "Task01_BrainTumour", arcname="Task01_BrainTumour")
    out = tmp_path / "subjects"
    info = import_msd(archive, out, tmp_path / "msd.tsv", tmp_path / "work")
    assert info["n_cases"] == 4
    t2 = nib.load(str(out / "BRATS_001" / "t2.nii.gz")).get_fdata()
    mask = nib.load(str(out / "BRATS_001" / "mask.nii.gz")).get_fdata() > 0
    ref = vols[3][::4, ::4, ::4][::-1, ::-1, :]  # LPS -> RAS
    corr = np.corrcoef(t2[mask], ref[mask])[0, 1]
    assert corr > 0.99  # channel 3 (T2w), not another contrast
    bad = tmp_path / "bad"
    (bad / "imagesTr").mkdir(parents=True)
    nib.save(nib.Nifti1Image(data[..., 0], aff), str(bad / "imagesTr" / "BRATS_001.nii.gz"))
    with pytest.raises(InputError, match="expected a 4D volume"):
        import_msd(bad, tmp_path / "o", tmp_path / "m.tsv", limit=None)


def test_ixi_qc_table_flags_failed_subjects(tmp_path: Path, capsys) -> None:
    from mrbench.datasets.ixi import qc_table

    def qc(name: str, nmi: tuple, gncc: tuple, vol: float, cover: float) -> Path:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(qc_record(name, vol, nmi, gncc, cover)))
        return path

    files = [
        qc("IXI002-Guys-0828", (1.06, 1.08), (0.66, 0.73), 1314, 1.0),
        qc("IXI012-HH-1211", (1.08, 1.05), (0.7, 0.6), 1300, 1.0),
        qc("IXI013-HH-1212", (1.0, 1.1), (0.1, 0.4), 2600, 0.8),
    ]
    df = qc_table(files, tmp_path / "qc.tsv")
    flags = dict(zip(df["subject"], df["flag"], strict=True))
    assert flags["IXI002-Guys-0828"] == "ok"
    assert "did not improve" in flags["IXI012-HH-1211"]
    assert "2600 ml outside the adult range 900-2000" in flags["IXI013-HH-1212"]
    assert "covers 80%" in flags["IXI013-HH-1212"]
    assert "2 flagged" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "qc.tsv", sep="\t").shape[0] == 3
