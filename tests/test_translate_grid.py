"""``mrbench translate --input`` on a volume whose grid differs from the training data's:
another orientation is reoriented (and the prediction put back on the input's grid), another
voxel size is refused in one line, a mask on another grid is refused."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import cyclegan_spec, save_method, tiny_training

from mrbench.cli import main
from mrbench.inference.grid import training_grid

GRID = {"orientation": "RAS", "spacing_mm": [9.0, 9.0, 9.0]}


@pytest.fixture()
def flip_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model file trained (as recorded) on 9 mm RAS volumes whose translation flips each
    axial window along its first axis: a result that depends on which axis is axial."""
    from mrbench_methods import get_plugin

    spec = cyclegan_spec("cyclegan_tiny", tiny_training(2, 1))
    cls = get_plugin("cyclegan")
    method = cls(spec["params"], image_size=16)
    monkeypatch.setattr(cls, "translate", lambda self, x, d: torch.flip(x, dims=[-2]))
    return save_method(method, tmp_path / "model.pt", "cyclegan_tiny", {"grid": GRID})


def _head(spacing: float = 9.0) -> nib.Nifti1Image:
    """A normalised 'brain' of 14 x 12 x 6 voxels, asymmetric along every axis, RAS."""
    vol = np.zeros((16, 16, 8), np.float32)
    i, j, k = np.meshgrid(np.arange(14), np.arange(12), np.arange(6), indexing="ij")
    vol[1:15, 2:14, 1:7] = 0.1 + 0.8 * (i + 2 * j + 3 * k) / (13 + 22 + 15)
    return nib.Nifti1Image(vol, np.diag([spacing, spacing, spacing, 1.0]))


def _reoriented(img: nib.Nifti1Image, codes: str) -> nib.Nifti1Image:
    """The same image (same world positions) stored in the orientation ``codes``."""
    ornt = nib.orientations
    tx = ornt.ornt_transform(ornt.io_orientation(img.affine), ornt.axcodes2ornt(tuple(codes)))
    data = ornt.apply_orientation(np.asarray(img.dataobj), tx)
    return nib.Nifti1Image(data, img.affine @ ornt.inv_ornt_aff(tx, img.shape))


def _translate(model: Path, img: nib.Nifti1Image, tmp_path: Path, name: str, *mask: str):
    src = tmp_path / f"{name}.nii.gz"
    nib.save(img, str(src))
    out = tmp_path / f"{name}_out.nii.gz"
    args = ["translate", "--checkpoint", str(model), "--direction", "t1_to_t2"]
    rc = main([*args, "--input", str(src), "--output", str(out), "--device", "cpu", *mask])
    return rc, src, out


def test_other_orientation_is_translated_along_the_training_axis(
    flip_model: Path, tmp_path: Path, capsys
) -> None:
    ras = _head()
    rc, _, out_ras = _translate(flip_model, ras, tmp_path, "ras")
    assert rc == 0
    ref = nib.load(str(out_ras))
    assert np.asarray(ref.dataobj).any()
    permuted = _reoriented(ras, "SLP")  # axial slices are now along the first axis
    rc, _, out = _translate(flip_model, permuted, tmp_path, "slp")
    assert rc == 0
    assert "reoriented to the training orientation RAS" in capsys.readouterr().out
    got = nib.load(str(out))
    # on the input's grid, and the same world-space prediction as for the RAS input
    assert got.shape == permuted.shape
    np.testing.assert_allclose(got.affine, permuted.affine)
    back = _reoriented(got, "RAS")
    np.testing.assert_allclose(back.affine, ref.affine, atol=1e-6)
    np.testing.assert_allclose(np.asarray(back.dataobj), np.asarray(ref.dataobj), atol=1e-6)


def test_other_voxel_size_is_refused_in_one_line(flip_model: Path, tmp_path: Path, capsys) -> None:
    rc, src, out = _translate(flip_model, _head(4.5), tmp_path, "fine")
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "Traceback" not in err
    assert str(src) in err and "4.5x4.5x4.5 mm" in err and "9x9x9 mm" in err
    assert "--target-spacing 9" in err
    assert not out.exists()


def test_mask_on_another_grid_is_refused(flip_model: Path, tmp_path: Path, capsys) -> None:
    img = _head()
    mask_aff = img.affine.copy()
    mask_aff[:3, 3] += 20.0  # same shape, shifted by 20 mm
    mask = nib.Nifti1Image((np.asarray(img.dataobj) > 0).astype(np.uint8), mask_aff)
    nib.save(mask, str(tmp_path / "mask.nii.gz"))
    rc, src, out = _translate(
        flip_model, img, tmp_path, "m", "--mask", str(tmp_path / "mask.nii.gz")
    )
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err
    assert "mask.nii.gz" in err and "not on the grid" in err
    assert not out.exists()
    # the same mask on the input's grid is used
    nib.save(nib.Nifti1Image(np.asarray(mask.dataobj), img.affine), str(tmp_path / "ok.nii.gz"))
    rc, _, out = _translate(flip_model, img, tmp_path, "m2", "--mask", str(tmp_path / "ok.nii.gz"))
    assert rc == 0 and out.exists()


def test_training_grid_is_orientation_and_median_spacing() -> None:
    affs = [np.diag([1.0, 1.0, 1.2, 1]), np.diag([1.0, 1.0, 1.2, 1]), np.diag([0.9, 1, 1.3, 1])]
    assert training_grid(affs) == {"orientation": "RAS", "spacing_mm": [1.0, 1.0, 1.2]}
    lps = np.diag([-2.0, -2.0, 2.0, 1])
    assert training_grid([lps]) == {"orientation": "LPS", "spacing_mm": [2.0, 2.0, 2.0]}
