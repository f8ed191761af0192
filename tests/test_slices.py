"""Slice store and splits: no subject in two splits, masks match images, lazy reads, round trips."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mrbench.datasets.splits import make_splits, read_splits, write_splits
from mrbench.io import InputError
from mrbench.slices import SliceStore, crop_pad, select_slices, uncrop


def test_splits_deterministic_and_disjoint(tmp_path: Path) -> None:
    ids = [f"s{i:02d}" for i in range(20)]
    a = make_splits(ids, 0.25, 0.1, seed=3)
    b = make_splits(ids, 0.25, 0.1, seed=3)
    assert a.equals(b)
    assert sorted(a["subject"]) == ids and not a["subject"].duplicated().any()
    assert (a["split"] == "test").sum() == 5 and (a["split"] == "val").sum() == 2
    path = write_splits(a, tmp_path / "x.tsv")
    assert read_splits(path).equals(a)


def test_split_file_with_duplicate_subject_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "bad.tsv"
    p.write_text("subject\tsplit\ns1\ttrain\ns1\ttest\ns2\tval\n")
    with pytest.raises(InputError, match="bad.tsv: subject\\(s\\) listed more than once"):
        read_splits(p)


def test_store_splits_masks_and_values(phantom_store: Path) -> None:
    stores = {s: SliceStore(phantom_store / s) for s in ("train", "val", "test")}
    seen: dict[str, str] = {}
    for split, store in stores.items():
        for subj in store.subjects:
            assert subj not in seen, f"{subj} in {seen.get(subj)} and {split}"
            seen[subj] = split
    train = stores["train"]
    assert len(train) == len(train.index) > 0
    item = train[0]
    assert item["a"].shape == (1, 16, 16)
    assert item.contrasts == ("t1", "t2")
    for dom in ("a", "b"):
        x = item[dom]
        assert x.min() >= -1 and x.max() <= 1
        # background (outside the mask) is exactly -1, brain has signal
        outside = item[f"mask_{dom}"] == 0
        assert (x[outside] == -1).all()
        assert (x[~outside] > -1).float().mean() > 0.9
    # mask of every slice matches the non-zero support of both images
    t1 = np.load(phantom_store / "train" / "t1.npy")
    mask = np.load(phantom_store / "train" / "mask.npy")
    assert ((t1 > 0) <= (mask > 0)).all()


def test_store_is_memory_mapped(phantom_store: Path) -> None:
    store = SliceStore(phantom_store / "train")
    assert isinstance(store.arrays["t1"], np.memmap)


def test_unpaired_pair_mixes_slices(phantom_store: Path) -> None:
    store = SliceStore(phantom_store / "train")
    p = store.pair(0, len(store) - 1)
    assert (p["a"] == store[0]["a"]).all()
    assert (p["b"] == store[len(store) - 1]["b"]).all()


def test_slices_go_back_to_their_positions(phantom_store: Path) -> None:
    store = SliceStore(phantom_store / "test")
    subj = store.subjects[0]
    info = store.subject_info(subj)
    vol = nib.load(phantom_store.parent / "subjects" / subj / "t1.nii.gz").get_fdata()
    rows = store.subject_rows(subj)
    for r, z in zip(rows, info["slices"], strict=True):
        window = np.asarray(store.arrays["t1"][r])
        placed = uncrop(window, info["x0"], info["y0"], vol.shape[:2])
        # inside the window the slice equals the volume at its original position
        x0, y0 = max(info["x0"], 0), max(info["y0"], 0)
        inside = np.zeros(vol.shape[:2], bool)
        inside[x0 : info["x0"] + 16, y0 : info["y0"] + 16] = True
        np.testing.assert_allclose(placed[inside], vol[..., z][inside], atol=1e-6)
        assert (placed[~inside] == 0).all()


def test_crop_pad_inverse() -> None:
    plane = np.arange(30 * 20, dtype=np.float32).reshape(30, 20)
    w = crop_pad(plane, -3, 4, 16)
    back = uncrop(w, -3, 4, plane.shape)
    np.testing.assert_array_equal(back[0:13, 4:20], plane[0:13, 4:20])


def test_select_slices_prefers_brain() -> None:
    mask = np.zeros((4, 4, 50), bool)
    mask[..., 10:30] = True
    mask[:2, :2, 30:35] = True  # small caps
    z = select_slices(mask, 10)
    assert len(z) == 10 and z.min() >= 10 and z.max() < 30
    assert len(select_slices(mask, 100)) == 25  # never pads with empty slices


def test_missing_volume_error_names_file(tmp_path: Path, phantom_store: Path) -> None:
    from mrbench.slices import SubjectVolumes, build_split

    sv = SubjectVolumes.in_dir("ghost", tmp_path / "ghost")
    with pytest.raises(InputError, match=r"ghost/mask.nii.gz: file not found"):
        build_split([sv], tmp_path / "out", 16, 4)
    assert not (tmp_path / "out").exists()


def test_unreadable_volume_error_names_file(tmp_path: Path) -> None:
    from mrbench.slices import SubjectVolumes, build_split

    d = tmp_path / "s1"
    d.mkdir()
    for m in ("t1", "t2", "mask"):
        (d / f"{m}.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(InputError, match=r"s1/mask.nii.gz: cannot read NIfTI volume"):
        build_split([SubjectVolumes.in_dir("s1", d)], tmp_path / "out", 16, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s1"], "no partial output left behind"
