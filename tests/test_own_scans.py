"""The README's "Translate your own scans", command by command, on a real skull-on head
(../shared/testdata/skull_on) with a model trained by the tiny workflow: ``mrbench preprocess``
onto the model's voxel size, ``mrbench translate --input`` with the model's ``model.pt``, then
``mrbench metrics`` against the preprocessed T2."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import require_testdata

from mrbench.checkpoint import read_model
from mrbench.cli import main


@pytest.mark.slow
def test_own_scan_preprocess_translate_metrics(tiny_run, tmp_path: Path) -> None:
    t1 = require_testdata("skull_on", "subj01_t1.nii.gz")
    t2 = require_testdata("skull_on", "subj01_t2.nii.gz")
    model = tiny_run.work / "results" / "models" / "phantom" / "cyclegan" / "seed0" / "model.pt"
    grid = read_model(model)["meta"]["grid"]  # recorded by training: what the model expects
    assert grid["orientation"] == "RAS" and grid["spacing_mm"] == [9.0, 9.0, 9.0]
    spacing = grid["spacing_mm"][0]

    # 1. preprocess the raw pair onto the model's voxel size
    pre = tmp_path / "subj01"
    args = ["--t1", str(t1), "--t2", str(t2), "--out", str(pre)]
    assert main(["preprocess", *args, "--target-spacing", f"{spacing:g}"]) == 0
    src = nib.load(str(pre / "t1.nii.gz"))
    np.testing.assert_allclose(src.header.get_zooms(), (spacing,) * 3, atol=1e-4)

    # 2. translate with the trained model: the output is on the input's grid
    out = tmp_path / "subj01_t2_synth.nii.gz"
    args = ["--checkpoint", str(model), "--direction", "t1_to_t2", "--device", "cpu"]
    files = [
        "--input",
        str(pre / "t1.nii.gz"),
        "--output",
        str(out),
        "--mask",
        str(pre / "mask.nii.gz"),
    ]
    assert main(["translate", *args, *files]) == 0
    pred = nib.load(str(out))
    assert pred.shape == src.shape
    np.testing.assert_allclose(pred.affine, src.affine, atol=1e-6)
    data = np.asarray(pred.dataobj)
    mask = np.asarray(nib.load(str(pre / "mask.nii.gz")).dataobj) > 0
    assert np.isfinite(data).all() and data[mask].any()
    assert data.min() >= 0 and data.max() <= 1

    # 3. metrics against the reference (the preprocessed T2) inside the brain mask
    ref = ["--target", str(pre / "t2.nii.gz"), "--mask", str(pre / "mask.nii.gz")]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["metrics", "--pred", str(out), *ref]) == 0
    scores = json.loads(printed.getvalue())["metrics"]
    assert {"psnr", "ssim"} <= {k.lower() for k in scores}, scores
