"""``mrbench translate``: NIfTI outputs on the input's grid, for user volumes and test splits."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from mrbench.checkpoint import MODEL_FORMAT
from mrbench.cli import main
from mrbench.slices import SubjectVolumes, build_split

SIZE = 16


def _phantom(shape=(22, 25, 9), seed=0):
    """An ellipsoidal 'head' with two tissue classes and inverted contrast between T1 and T2."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    r = (x / 0.6) ** 2 + (y / 0.55) ** 2 + (z / 0.9) ** 2
    mask = r < 1
    inner = r < 0.4
    t1 = np.where(inner, 0.9, 0.5) * mask + rng.normal(0, 0.01, shape) * mask
    t2 = np.where(inner, 0.3, 0.8) * mask + rng.normal(0, 0.01, shape) * mask
    return np.clip(t1, 0, 1).astype(np.float32), np.clip(t2, 0, 1).astype(np.float32), mask


def _identity_model(path):
    rec = {"format": MODEL_FORMAT, "method": "identity", "plugin": "identity", "params": {}}
    torch.save(rec | {"image_size": SIZE, "state": {}, "meta": {}}, path)
    return path


AFFINE = np.array(
    [[-2.0, 0, 0, 40.0], [0, 2.0, 0, -30.0], [0, 0, 3.0, -12.0], [0, 0, 0, 1]], dtype=np.float64
)


def _translate_volume(tmp_path, image, direction, output, name="in.nii.gz") -> int:
    """Save ``image`` on :data:`AFFINE` as ``tmp_path / name`` and translate it in ``direction``
    by the identity model into ``output`` through the command line; the exit code."""
    nib.save(nib.Nifti1Image(image, AFFINE), tmp_path / name)
    ckpt = _identity_model(tmp_path / "model.pt")
    args = ["translate", "--checkpoint", str(ckpt), "--direction", direction]
    return main([*args, "--input", str(tmp_path / name), "--output", str(output)])


def test_translate_single_volume_keeps_affine_and_shape(tmp_path):
    t1, _, mask = _phantom()
    out = tmp_path / "out" / "pred.nii.gz"
    assert _translate_volume(tmp_path, t1, "t1_to_t2", out) == 0
    img = nib.load(out)
    assert img.shape == t1.shape
    np.testing.assert_allclose(img.affine, AFFINE)
    pred = np.asarray(img.dataobj)
    # the brain is 13 x 13 voxels in-plane, so a 16 px window holds it: identity gives it back
    assert np.abs(pred[mask] - t1[mask]).max() < 1e-6
    assert np.all(pred[~mask] == pytest.approx(0.0, abs=1e-6))


def test_translate_crops_brain_larger_than_window(tmp_path):
    t1, _, _ = _phantom(shape=(40, 40, 6))
    out = tmp_path / "pred.nii.gz"
    assert _translate_volume(tmp_path, t1, "t2_to_t1", out) == 0
    pred = np.asarray(nib.load(out).dataobj)
    assert pred.shape == t1.shape
    nonzero = np.flatnonzero(pred.any(axis=(1, 2)))
    assert len(nonzero) <= SIZE  # only the 16 px window about the brain was translated


def test_translate_rejects_unnormalised_input(tmp_path, capsys):
    t1, _, _ = _phantom()
    rc = _translate_volume(tmp_path, t1 * 300, "t1_to_t2", tmp_path / "o.nii.gz", "raw.nii.gz")
    assert rc == 1
    err = capsys.readouterr().err
    assert "raw.nii.gz" in err and "[0, 1]" in err
    assert not (tmp_path / "o.nii.gz").exists()


def _store(tmp_path, n=2):
    subjects = []
    for i in range(n):
        t1, t2, mask = _phantom(seed=i)
        d = tmp_path / "subjects" / f"s{i}"
        d.mkdir(parents=True)
        for name, arr in {"t1": t1, "t2": t2, "mask": mask.astype(np.uint8)}.items():
            nib.save(nib.Nifti1Image(arr, AFFINE), d / f"{name}.nii.gz")
        subjects.append(SubjectVolumes.in_dir(f"s{i}", d))
    return build_split(subjects, tmp_path / "slices" / "test", SIZE, 5)


def _translated_split(tmp_path, direction, out="pred"):
    """``_store``'s split translated in ``direction`` by the identity model through the command
    line into ``tmp_path / out``: (the split, the predictions' folder)."""
    store = _store(tmp_path)
    ckpt = _identity_model(tmp_path / "model.pt")
    pred = tmp_path / out
    base = ["--checkpoint", str(ckpt), "--store", str(store), "--direction", direction]
    assert main(["translate", *base, "--out-dir", str(pred)]) == 0
    return store, pred


def test_translate_store_writes_subject_volumes_and_timing(tmp_path):
    store, out_dir = _translated_split(tmp_path, "t1_to_t2", "pred/t1_to_t2")
    meta = json.loads((store / "meta.json").read_text())
    for info in meta["subjects"]:
        img = nib.load(out_dir / f"{info['subject']}.nii.gz")
        assert list(img.shape) == info["shape"]
        np.testing.assert_allclose(img.affine, info["affine"])
        pred = np.asarray(img.dataobj)
        src = np.asarray(nib.load(tmp_path / "subjects" / info["subject"] / "t1.nii.gz").dataobj)
        # translated slices are placed back where they came from; others stay empty
        for z in range(pred.shape[-1]):
            if z in info["slices"]:
                np.testing.assert_allclose(pred[..., z], src[..., z], atol=1e-6)
            else:
                assert not pred[..., z].any()
    timing = json.loads((out_dir / "timing.json").read_text())
    assert timing["n_slices"] == 10 and timing["seconds_per_slice"] >= 0
    assert timing["direction"] == "t1_to_t2"


def test_metrics_of_a_translated_split(tmp_path):
    import pandas as pd

    from mrbench.evaluation.stats import summarise

    store, pred = _translated_split(tmp_path, "t2_to_t1")
    out = tmp_path / "m.csv"
    args = ["metrics", "--pred-dir", str(pred), "--store", str(store), "--direction", "t2_to_t1"]
    args += ["--dataset", "toy", "--method", "identity", "--seed", "3", "--out", str(out)]
    args += ["--config-hash", "abc123", "--protocols", "max01", "volume3d"]
    assert main(args) == 0
    df = pd.read_csv(out)
    assert set(df["protocol"]) == {"max01", "volume3d"}
    assert (df["config_hash"] == "abc123").all() and df["code_version"].notna().all()
    assert df["packages"].str.contains("scikit-image=").all()
    two_d = df[df["protocol"] == "max01"]
    # subjects x slices x (4 metrics, whole and brain, and MS-SSIM); no labels: no lesion rows
    assert len(two_d) == 2 * 5 * 9
    assert len(df[df["protocol"] == "volume3d"]) == 2 * 9
    # identity T2 -> T1 on inverted contrast is a poor prediction: finite, well below 100 % SSIM
    assert two_d[two_d["metric"] == "ssim"]["value"].lt(95).all()

    # the true T1 as prediction: infinite PSNR survives the CSV and the aggregation
    perfect = tmp_path / "perfect"
    perfect.mkdir()
    for s in ("s0", "s1"):
        (perfect / f"{s}.nii.gz").write_bytes(
            (tmp_path / "subjects" / s / "t1.nii.gz").read_bytes()
        )
    out2 = tmp_path / "p.csv"
    args2 = [a if a != str(pred) else str(perfect) for a in args]
    args2[args2.index(str(out))] = str(out2)
    assert main(args2) == 0
    df2 = pd.read_csv(out2)
    psnr = df2[(df2["metric"] == "psnr") & (df2["protocol"] == "max01")]["value"]
    assert np.isinf(psnr).all()
    summary = summarise(df2)
    row = summary[(summary["metric"] == "ssim") & (summary["protocol"] == "max01")].iloc[0]
    assert row["mean"] == pytest.approx(100.0)
    row = summary[(summary["metric"] == "psnr") & (summary["protocol"] == "max01")].iloc[0]
    assert np.isinf(row["mean"]) and row["n_infinite"] == 10


def test_figures_from_translated_split(tmp_path):
    import pandas as pd

    store, pred = _translated_split(tmp_path, "t1_to_t2")
    fig = tmp_path / "fig" / "qualitative"
    args = ["report", "qualitative", "--store", str(store), "--direction", "t1_to_t2"]
    args += ["--pred", f"Identity={pred}", f"Copy={pred}", "--out", str(fig)]
    assert main(args) == 0
    assert fig.with_suffix(".png").stat().st_size > 1000 and fig.with_suffix(".pdf").exists()
    bad = main([*args[:-1], str(tmp_path / "x"), "--subject", "nobody"])
    assert bad == 1

    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"step": [1, 2], "loss_g": [1.0, 0.5], "sec_per_step": [0.1, 0.1]}).to_csv(
        run / "train_log.csv", index=False
    )
    pd.DataFrame({"step": [1, 2], "seconds_elapsed": [1, 2], "psnr": [10, 12]}).to_csv(
        run / "val_log.csv", index=False
    )
    curves = tmp_path / "fig" / "curves"
    assert main(["report", "curves", "--run", f"m={run}", "--out", str(curves)]) == 0
    assert curves.with_suffix(".png").exists()

    out = tmp_path / "m.csv"
    margs = ["metrics", "--pred-dir", str(pred), "--store", str(store), "--direction", "t1_to_t2"]
    assert main([*margs, "--method", "identity", "--dataset", "toy", "--out", str(out)]) == 0
    box = tmp_path / "fig" / "box"
    assert (
        main(["report", "boxplot", "--tidy", str(out), "--dataset", "toy", "--out", str(box)]) == 0
    )
    assert box.with_suffix(".pdf").exists()


def _pair_store(tmp_path, n=2):
    """``_store``'s subjects with a FLAIR volume too (the T1 with CSF-like dark centre), in a
    slice store holding T1w, T2w and FLAIR."""
    subjects = []
    for i in range(n):
        t1, t2, mask = _phantom(seed=i)
        flair = np.clip(1.0 - t2, 0, 1) * mask
        d = tmp_path / "subjects" / f"s{i}"
        d.mkdir(parents=True)
        vols = {"t1": t1, "t2": t2, "flair": flair.astype(np.float32)}
        for name, arr in {**vols, "mask": mask.astype(np.uint8)}.items():
            nib.save(nib.Nifti1Image(arr, AFFINE), d / f"{name}.nii.gz")
        subjects.append(SubjectVolumes.in_dir(f"s{i}", d, ("t1", "t2", "flair")))
    return build_split(subjects, tmp_path / "slices" / "test", SIZE, 5, ("t1", "t2", "flair"))


def _pair_model(path, pair):
    """The identity model, recorded as trained on ``pair``."""
    rec = {"format": MODEL_FORMAT, "method": "identity", "plugin": "identity", "params": {}}
    torch.save(rec | {"image_size": SIZE, "state": {}, "meta": {"pair": list(pair)}}, path)
    return path


def test_t1_t2_model_refuses_a_pd_direction_with_one_line(tmp_path, capsys):
    """A model trained on T1w/T2w asked for PD: one line naming the model file, its pair and
    the asked direction, before any output (store and single-volume forms)."""
    store = _pair_store(tmp_path)
    ckpt = _identity_model(tmp_path / "model.pt")  # no pair in meta: an older T1w/T2w model
    out = tmp_path / "pred" / "pd_to_t2"
    args = ["translate", "--checkpoint", str(ckpt), "--direction", "pd_to_t2"]
    assert main([*args, "--store", str(store), "--out-dir", str(out), "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(ckpt) in err and "T1w/T2w" in err and "pd_to_t2" in err, err
    assert "PDw -> T2w" in err
    assert not (tmp_path / "pred").exists()

    t1, _, _ = _phantom()
    nib.save(nib.Nifti1Image(t1, AFFINE), tmp_path / "own.nii.gz")
    single = [*args, "--input", str(tmp_path / "own.nii.gz"), "--output", str(out) + ".nii.gz"]
    assert main(single) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(ckpt) in err and "pd_to_t2" in err, err
    assert not (tmp_path / "pred").exists()


def test_library_refuses_another_pairs_direction_after_loading(tmp_path):
    """The library entry points check the pair themselves (not only the command line)."""
    from mrbench.inference.translate import translate_store
    from mrbench.io import InputError

    store = _pair_store(tmp_path)
    ckpt = _pair_model(tmp_path / "model.pt", ("t2", "flair"))
    with pytest.raises(InputError, match=r"model\.pt: direction t1_to_t2: .*T2w/FLAIR"):
        translate_store(ckpt, store, "t1_to_t2", tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


def test_translate_windows_takes_contract_directions_only(tmp_path):
    """A contrast direction handed to the model layer is a caller's bug, named as such; the
    contract directions reach the method as the guarded NEUTRAL_DIRECTIONS objects."""
    from mrbench.inference.translate import load_model, translate_windows
    from mrbench.pairs import NEUTRAL_DIRECTIONS

    model = load_model(_identity_model(tmp_path / "model.pt"))
    seen = []
    original = model.translate
    model.translate = lambda x, d: seen.append(d) or original(x, d)
    windows = np.full((3, SIZE, SIZE), 0.25, dtype=np.float32)
    out, _ = translate_windows(model, windows, "b_to_a")
    np.testing.assert_allclose(out, windows, atol=1e-6)
    assert seen and all(d is NEUTRAL_DIRECTIONS[1] for d in seen)
    with pytest.raises(ValueError, match="model_direction"):
        translate_windows(model, windows, "t1_to_t2")


def test_non_default_pair_model_translates_its_contrast_directions(tmp_path):
    """A T2w/FLAIR model translates flair_to_t2 (its b_to_a) from the store's FLAIR slices into
    the folder named by the contrast direction, and records its pair in timing.json."""
    store = _pair_store(tmp_path)
    ckpt = _pair_model(tmp_path / "model.pt", ("t2", "flair"))
    out = tmp_path / "pred" / "flair_to_t2"
    base = ["translate", "--checkpoint", str(ckpt), "--store", str(store)]
    assert main([*base, "--direction", "flair_to_t2", "--out-dir", str(out)]) == 0
    meta = json.loads((store / "meta.json").read_text())
    assert meta["contrasts"] == ["t1", "t2", "flair"]
    for info in meta["subjects"]:
        pred = np.asarray(nib.load(out / f"{info['subject']}.nii.gz").dataobj)
        src = nib.load(tmp_path / "subjects" / info["subject"] / "flair.nii.gz")
        z = info["slices"][0]
        # the identity model gives its source back: the FLAIR, not the T1w or T2w
        np.testing.assert_allclose(pred[..., z], np.asarray(src.dataobj)[..., z], atol=1e-6)
    timing = json.loads((out / "timing.json").read_text())
    assert timing["direction"] == "flair_to_t2" and timing["pair"] == ["t2", "flair"]
