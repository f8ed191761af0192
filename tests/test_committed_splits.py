"""The committed IXI and BraTS 2018 splits: equal to what the code computes from the public
subject lists in ../shared/datasets, never rewritten by a run, and every archive is checked
against them (a listed subject missing or incomplete stops the job with one line; subjects the
split does not list are counted and ignored)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SHARED, TESTDATA, load_config, snakemake, write_tar

from mrbench.cli import main
from mrbench.datasets.brats import grade_split, import_brats
from mrbench.datasets.ixi import check_archives, split_of_names
from mrbench.datasets.splits import read_splits, write_splits

LISTS = SHARED / "datasets"
SPLITS = ROOT / "config" / "splits"


def _shared_list(name: str) -> pd.DataFrame:
    path = LISTS / name
    if not path.exists():
        pytest.skip(f"public subject lists not available: {path} is absent (beside the project)")
    return pd.read_csv(path, sep="\t", dtype=str)


def _same_file(df: pd.DataFrame, committed: Path, tmp_path: Path) -> None:
    """``df`` written the way the code writes split files is byte for byte the committed file."""
    fresh = write_splits(df, tmp_path / committed.name)
    assert fresh.read_bytes() == committed.read_bytes()


def test_ixi_split_is_the_documented_rule_on_the_public_list(tmp_path: Path) -> None:
    lst = _shared_list("ixi_subjects.tsv")
    t1 = [f"{s}-T1.nii.gz" for s in lst.loc[lst["t1"] == "yes", "subject"]]
    t2 = [f"{s}-T2.nii.gz" for s in lst.loc[lst["t2"] == "yes", "subject"]]
    df, excluded = split_of_names(t1, t2)
    _same_file(df, SPLITS / "ixi.tsv", tmp_path)
    committed = read_splits(SPLITS / "ixi.tsv")
    assert committed["split"].value_counts().to_dict() == {"train": 54, "test": 20, "val": 6}
    assert "IXI014-HH-1236" not in set(committed["subject"])
    assert "IXI014-HH-1236" in set(excluded["subject"])
    assert committed["subject"].tolist() == sorted(committed["subject"])


def test_brats_split_is_stratified_by_grade(tmp_path: Path) -> None:
    lst = _shared_list("brats2018_subjects.tsv")
    df = grade_split(dict(zip(lst["subject"], lst["grade"], strict=True)))
    _same_file(df, SPLITS / "brats2018.tsv", tmp_path)
    table = read_splits(SPLITS / "brats2018.tsv").merge(lst, on="subject")
    assert len(table) == 285
    counts = pd.crosstab(table["grade"], table["split"]).to_dict("index")
    assert counts["HGG"] == {"test": 63, "train": 132, "val": 15}
    assert counts["LGG"] == {"test": 23, "train": 47, "val": 5}


def _ixi_tar(path: Path, subjects: list[str], mod: str) -> Path:
    return write_tar(path, [(f"{s}-{mod}.nii.gz", b"\x1f\x8b" + s.encode()) for s in subjects])


def _split(path: Path, subjects: list[str]) -> Path:
    splits = ["train", "val", "test"] * len(subjects)
    df = pd.DataFrame({"subject": subjects, "split": splits[: len(subjects)]})
    return write_splits(df, path)


def test_ixi_archives_checked_against_the_split(tmp_path: Path, capsys) -> None:
    listed = ["IXI002-Guys-0828", "IXI012-HH-1211", "IXI013-HH-1212", "IXI015-HH-1258"]
    extra = ["IXI500-Guys-1017", "IXI501-Guys-1018"]
    split = _split(tmp_path / "ixi.tsv", listed)
    before = split.read_bytes()
    t1 = _ixi_tar(tmp_path / "IXI-T1.tar", listed + extra, "T1")
    t2 = _ixi_tar(tmp_path / "IXI-T2.tar", listed + extra[:1], "T2")
    assert check_archives(t1, t2, split) == listed
    assert "2 other subject(s) in the archive ignored" in capsys.readouterr().out
    # a listed subject without its T2, another missing from both archives
    t1 = _ixi_tar(tmp_path / "IXI-T1.tar", listed[1:] + extra, "T1")
    t2 = _ixi_tar(tmp_path / "IXI-T2.tar", listed[1:3], "T2")
    out = tmp_path / "check.txt"
    args = ["--t1-tar", str(t1), "--t2-tar", str(t2), "--split", str(split), "--out", str(out)]
    assert main(["ixi", "check", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "IXI002-Guys-0828" in err and "IXI015-HH-1258 (T2)" in err, err
    assert str(split) in err
    assert not out.exists() and split.read_bytes() == before


def _small_case(src: Path) -> dict[str, bytes]:
    """The BraTS-like test case at 4 mm (fast to import), as NIfTI bytes per modality."""
    out = {}
    for mod in ("t1", "t2"):
        img = nib.load(str(src / f"case01_{mod}.nii.gz"))
        aff = img.affine.copy()
        aff[:3, :3] *= 4
        small = nib.Nifti1Image(np.asarray(img.dataobj)[::4, ::4, ::4], aff)
        out[mod] = small.to_bytes()
    return out


def _brats_archive(path: Path, data: dict[str, bytes], cases: dict[str, tuple[str, ...]]) -> Path:
    members = []
    for case, mods in cases.items():
        for mod in mods:
            members.append(
                (f"MICCAI_BraTS_2018_Data_Training/HGG/{case}/{case}_{mod}.nii", data[mod])
            )
    return write_tar(path, members)


def test_brats_archive_checked_against_the_split(tmp_path: Path, capsys) -> None:
    src = TESTDATA / "brats_like"
    if not (src / "case01_t1.nii.gz").exists():
        pytest.skip(f"BraTS-like test case not available: {src} is absent")
    data = _small_case(src)
    listed = ["Brats18_2013_2_1", "Brats18_CBICA_AAB_1", "Brats18_TCIA01_131_1"]
    split = _split(tmp_path / "brats2018.tsv", listed)
    before = split.read_bytes()
    full = dict.fromkeys(listed, ("t1", "t2"))
    # one listed case missing from the archive, another without its T2: one line names both
    bad = {**full, "Brats18_CBICA_AAB_1": ("t1",)}
    del bad["Brats18_2013_2_1"]
    archive = _brats_archive(tmp_path / "bad.tar", data, bad)
    out = tmp_path / "subjects"
    args = ["--source", str(archive), "--out", str(out), "--splits", str(split)]
    assert main(["import-brats", *args, "--workdir", str(tmp_path / "w1")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "Brats18_2013_2_1" in err and "Brats18_CBICA_AAB_1 (t2)" in err, err
    assert not out.exists()
    # the listed cases plus two the split does not list (one incomplete): those are ignored
    extra = {"Brats18_TCIA02_999_1": ("t1", "t2"), "Brats18_TCIA02_998_1": ("t1",)}
    archive = _brats_archive(tmp_path / "good.tar", data, {**full, **extra})
    info = import_brats(archive, out, split, tmp_path / "w2")
    assert info["n_cases"] == 3
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == listed
    assert "2 other subject(s) in the archive ignored" in capsys.readouterr().out
    assert split.read_bytes() == before


def test_workflow_reads_committed_splits_and_never_writes_them() -> None:
    """With the shipped config, no job writes config/splits/{ixi,brats2018}.tsv: the IXI
    subjects are known before any download (every per-subject job is in the dry run), the
    archives are checked, and the BraTS import reads its split."""
    for name in ("ixi", "brats2018"):
        assert (SPLITS / f"{name}.tsv").exists()
    cfg = load_config("config.yaml")
    assert cfg["datasets"]["brats2018"]["split_file"] == "config/splits/brats2018.tsv"
    res = snakemake(ROOT, "-n", "--configfile", "config/config.yaml")
    assert res.returncode == 0, res.stderr[-3000:]
    text = res.stdout + res.stderr
    assert "ixi_split" not in text
    jobs = {
        line.split()[0]: int(line.split()[1])
        for line in text.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert jobs["ixi_check"] == 1
    assert jobs["ixi_extract"] == jobs["ixi_preprocess"] == 80
    block = text[text.index("rule brats_import:") :].splitlines()[1:8]
    fields = {ln.split(":")[0].strip(): ln for ln in block}
    assert "config/splits/brats2018.tsv" in fields["input"]
    assert "brats2018.tsv" not in fields["output"]
