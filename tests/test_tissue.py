"""Tissue class maps from preprocessing: Atropos on a real skull-stripped IXI T1w gives adult
class volumes in the T1w intensity order; the phantom's labels follow its generating fractions;
a BraTS-like case carries its tissue and tumour labels into the slice store, which hands them
only to methods that need them."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import require_testdata

from mrbench.datasets.phantom import prepare_subject
from mrbench.datasets.phantom_volumes import PhantomSettings, make_subject, write_phantom
from mrbench.io import InputError
from mrbench.preprocessing.ants_io import canonical
from mrbench.preprocessing.tissues import segment_tissues
from mrbench.slices import SliceStore, SubjectVolumes, build_split, normalise_volume

#: Adult ranges (ml) inside a skull-stripped brain mask, wide enough for age and sex: GM
#: 450-900 and WM 350-750 (healthy adults, e.g. Good et al. 2001, NeuroImage 14:21), CSF
#: within the mask (ventricles and sulci, without the subarachnoid space outside it) 60-500.
ADULT_ML = {"csf": (60, 500), "gm": (450, 900), "wm": (350, 750)}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def test_ixi_tissue_volumes_are_adult_and_ordered_in_t1() -> None:
    folder = require_testdata("ixi")
    t1, aff = canonical(nib.load(folder / "IXI002-Guys-0828-T1_brain.nii.gz"))
    mask, _ = canonical(nib.load(folder / "IXI002-Guys-0828-T1_brainmask.nii.gz"))
    mask = mask > 0
    t1n = normalise_volume(t1, mask)
    labels, info = segment_tissues(t1n, mask, aff)
    assert labels.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert not labels[~mask].any() and labels[mask].all()
    vols = info["volumes_ml"]
    for name, (lo, hi) in ADULT_ML.items():
        assert lo <= vols[name] <= hi, f"{name} {vols[name]} ml outside {lo}-{hi}"
    mean = info["mean_t1"]
    assert mean["wm"] > mean["gm"] > mean["csf"], mean
    voxel_ml = float(np.prod(np.sqrt((aff[:3, :3] ** 2).sum(0)))) / 1000
    assert abs(sum(vols.values()) - mask.sum() * voxel_ml) < 1.0


def test_phantom_labels_agree_with_generating_fractions(tmp_path: Path) -> None:
    settings = PhantomSettings(voxel_size=6.0)
    subj = make_subject(0, 0, settings)
    frac = subj["fractions"]
    # through the dataset writer and the phantom's preprocessing to the subject folder
    write_phantom(tmp_path / "raw", 1, 0, settings)
    prepare_subject(tmp_path / "raw", "phantom001", tmp_path / "subj")
    img = nib.load(tmp_path / "subj" / "label.nii.gz")
    assert np.issubdtype(img.get_data_dtype(), np.integer)
    labels = np.asarray(img.dataobj)
    mask = np.asarray(nib.load(tmp_path / "subj" / "mask.nii.gz").dataobj) > 0
    stack = np.stack([frac["csf"], frac["gm"], frac["wm"]])
    dominant = np.where(mask, 1 + stack.argmax(0), 0)
    for code, name in ((1, "CSF"), (2, "GM"), (3, "WM")):
        d = _dice(labels == code, dominant == code)
        assert d >= 0.9, f"{name}: Dice {d:.3f} with the generating fractions"
    # where a tissue fills most of a voxel, the label is that tissue
    for code, name in ((1, "csf"), (2, "gm"), (3, "wm")):
        pure = (frac[name] > 0.8) & mask
        assert (labels[pure] == code).mean() > 0.99
    # T1w order of the phantom's contrast holds under its labels
    t1 = np.asarray(nib.load(tmp_path / "subj" / "t1.nii.gz").dataobj)
    means = [t1[labels == c].mean() for c in (1, 2, 3)]
    assert means[2] > means[1] > means[0]


def _seg_sphere(shape: tuple[int, ...], centre: np.ndarray, radius: float) -> np.ndarray:
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return (np.linalg.norm(grid - centre, axis=-1) < radius).astype(np.uint8)


def test_brats_like_case_carries_tissue_and_tumour_labels_to_the_slice_store(
    tmp_path: Path,
) -> None:
    from mrbench.datasets.brats import _import_case

    folder = require_testdata("brats_like")
    raw = nib.load(folder / "case01_t1.nii.gz")
    nonzero = np.argwhere(np.asarray(raw.dataobj) != 0)
    centre = nonzero.mean(0)
    seg = _seg_sphere(raw.shape, centre, 12.0) * 2  # any non-zero BraTS label is tumour
    seg_path = tmp_path / "case01_seg.nii.gz"
    nib.save(nib.Nifti1Image(seg, raw.affine), seg_path)
    files = {
        "t1": folder / "case01_t1.nii.gz",
        "t2": folder / "case01_t2.nii.gz",
        "seg": seg_path,
    }
    out = tmp_path / "subjects" / "case01"
    info = _import_case(files, out)
    assert info["tumour_ml"] == pytest.approx(seg.astype(bool).sum() / 1000, rel=0.01)
    labels = np.asarray(nib.load(out / "label.nii.gz").dataobj)
    mask = np.asarray(nib.load(out / "mask.nii.gz").dataobj) > 0
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}
    assert not labels[~mask].any()
    # the tumour sits where the archive's segmentation put it (reoriented like the images)
    seg_ras = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(seg, raw.affine)).dataobj)
    assert np.array_equal(labels == 4, (seg_ras > 0) & mask)

    store_dir = build_split(
        [SubjectVolumes.in_dir("case01", out)], tmp_path / "slices", size=64, slices_per_subject=8
    )
    unlabelled = SubjectVolumes(
        "case01", {"t1": out / "t1.nii.gz", "t2": out / "t2.nii.gz"}, out / "mask.nii.gz"
    )
    bare = build_split([unlabelled], tmp_path / "bare", size=64, slices_per_subject=2)
    assert not (bare / "label.npy").exists()
    with pytest.raises(InputError, match="label.npy"):
        SliceStore(bare, labels=True)
    plain = SliceStore(store_dir)
    assert "label_a" not in plain.pair(0, 1)
    store = SliceStore(store_dir, labels=True)
    stored = np.load(store_dir / "label.npy")
    assert stored.dtype == np.uint8 and (stored == 4).any()
    item = store.pair(0, 3)
    assert item["label_a"].shape == (1, 64, 64)
    assert np.array_equal(item["label_a"][0].numpy(), stored[0])
    assert np.array_equal(item["label_b"][0].numpy(), stored[3])
    # labels are zero exactly outside the stored brain mask
    masks = np.load(store_dir / "mask.npy")
    assert np.array_equal(stored > 0, masks > 0)


def test_preprocessing_writes_labels_qc_volumes_and_figure_row(tmp_path: Path) -> None:
    from PIL import Image

    from mrbench.preprocessing.params import PreprocessParams
    from mrbench.preprocessing.pipeline import _write_tissues
    from mrbench.preprocessing.qc import qc_figure

    subj = make_subject(0, 0, PhantomSettings(voxel_size=6.0))
    mask = subj["mask"] > 0
    t1 = normalise_volume(subj["t1"], mask)
    qc: dict = {}
    labels = _write_tissues(t1, mask, subj["affine"], PreprocessParams(), tmp_path, qc)
    written = np.asarray(nib.load(tmp_path / "label.nii.gz").dataobj)
    assert np.array_equal(written, labels)
    vols = qc["tissue"]["volumes_ml"]
    assert set(vols) == {"csf", "gm", "wm"}
    assert abs(sum(vols.values()) - mask.sum() * 6.0**3 / 1000) < 0.5
    spacing = np.full(3, 6.0)
    qc_figure(t1, t1, mask, spacing, tmp_path / "plain.png", "plain")
    qc_figure(t1, t1, mask, spacing, tmp_path / "qc.png", "with labels", labels=labels)
    h_plain = Image.open(tmp_path / "plain.png").size[1]
    h_labels = Image.open(tmp_path / "qc.png").size[1]
    assert h_labels > 1.2 * h_plain  # the fourth row: the tissue classes
    assert (
        _write_tissues(
            t1, mask, subj["affine"], PreprocessParams(tissue_classes=False), tmp_path / "x", {}
        )
        is None
    )


def test_atropos_leaves_no_files_in_the_temporary_folder(tmp_path: Path, monkeypatch) -> None:
    """antspyx writes Atropos's class probability images to the temporary folder and never
    deletes them (hundreds of files after an IXI run): the segmentation cleans up after itself."""
    import tempfile

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    z, y, x = np.mgrid[:16, :16, :16]
    r = np.sqrt((x - 7.5) ** 2 + (y - 7.5) ** 2 + (z - 7.5) ** 2)
    mask = r < 7
    rng = np.random.default_rng(0)
    t1 = np.where(r < 2.5, 0.2, np.where(r < 5, 1.0, 0.6)) * mask + 0.02 * rng.random(r.shape)
    labels, _ = segment_tissues(t1.astype(np.float32), mask, np.eye(4))
    assert set(np.unique(labels[mask])) == {1, 2, 3}
    assert sorted(p.name for p in tmp.iterdir()) == []
    assert tempfile.tempdir == str(tmp)  # the caller's setting is back
