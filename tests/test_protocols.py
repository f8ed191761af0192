"""The challenge protocols (BraSyn), lesion / healthy-tissue regions, MS-SSIM, and the
protocol-sensitivity table (ranks and Kendall's tau)."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mrbench.cli import main
from mrbench.evaluation import metrics, msssim
from mrbench.evaluation import reference as metrics_reference

GAUSS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


@pytest.fixture(params=["kernel", "numpy"])
def path(request, monkeypatch):
    """Run a test once with the compiled kernel and once with the numpy fallback."""
    from mrbench.evaluation import kernel as metrics_kernel

    if request.param == "numpy":
        monkeypatch.setattr(metrics_kernel, "load", lambda: None)
    elif metrics_kernel._compiler() is None:
        pytest.skip("no C compiler: the compiled metrics kernel is unavailable")
    else:
        assert metrics_kernel.load() is not None, "metrics_kernel.c does not build"
    return request.param


def _clip_scale(x: np.ndarray) -> np.ndarray:
    """The documented BraSyn normalisation, written out for one volume."""
    lo, hi = np.percentile(x, [0.5, 99.5])
    lo = max(lo, 0.0)
    return (np.clip(x, lo, hi) - lo) / (hi - lo)


def _volumes(rng, shape, scale=1.0):
    t = rng.random(shape) * scale
    t[..., :2] = 0  # background
    p = np.clip(t + rng.normal(0, 0.1 * scale, shape), 0, None)
    p.flat[:3] = 5 * scale  # outliers that the clipping removes
    return t, p


# ------------------------------------------------------------------------- brasyn
@pytest.mark.parametrize("scale", [1.0, 700.0])
def test_brasyn_equals_skimage_after_the_documented_clipping(path, scale):
    rng = np.random.default_rng(int(scale))
    t, p = _volumes(rng, (2, 14, 16, 13), scale)
    res = metrics.compute_batch("brasyn", p, t, t > 0.3 * scale)
    for i in range(2):
        tn, pn = _clip_scale(t[i]), _clip_scale(p[i])
        assert tn.min() == 0 and tn.max() == 1 and pn.max() == 1
        psnr = peak_signal_noise_ratio(tn, pn, data_range=1.0)
        assert res["psnr"][i] == pytest.approx(psnr, abs=1e-6)
        ssim = structural_similarity(tn, pn, data_range=1.0)
        assert res["ssim"][i] == pytest.approx(100 * ssim, abs=1e-6)
        gauss = structural_similarity(tn, pn, data_range=1.0, **GAUSS)
        assert res["ssim_gauss"][i] == pytest.approx(100 * gauss, abs=1e-6)
    # the clipping matters: the unclipped max01-style value differs
    assert res["psnr"][0] != pytest.approx(metrics.compute_batch("volume3d", p, t)["psnr"][0])


def test_brasyn_is_a_3d_protocol_with_regions():
    proto = metrics.get_protocol("brasyn")
    assert (proto.dims, proto.mask, proto.data_range) == (3, "region", "1")
    with pytest.raises(ValueError, match="expects a batch of 3D images"):
        metrics.compute_batch("brasyn", np.ones((2, 8, 8)), np.ones((2, 8, 8)))


# ------------------------------------------------------------------------- MS-SSIM
def _torch_msssim(t: np.ndarray, p: np.ndarray, levels: int) -> np.ndarray:
    """pytorch-msssim's MS-SSIM; with fewer than 5 scales its own per-scale terms combined
    with the renormalised weights (its ms_ssim asserts 5 scales)."""
    torch = pytest.importorskip("torch")
    ref = importlib.import_module("pytorch_msssim.ssim")
    x, y = (torch.from_numpy(a[:, None]) for a in (t, p))
    if levels == 5:
        return ref.ms_ssim(x, y, data_range=1.0, size_average=False).numpy()
    win = ref._fspecial_gauss_1d(11, 1.5).repeat([1] + [1] * (x.ndim - 1))
    w = np.asarray(msssim.WEIGHTS[:levels]) / sum(msssim.WEIGHTS[:levels])
    out = np.ones(len(t))
    pool = torch.nn.functional.avg_pool2d if x.ndim == 4 else torch.nn.functional.avg_pool3d
    for level in range(levels):
        s, cs = ref._ssim(x, y, data_range=1.0, win=win, size_average=False)
        term = (s if level == levels - 1 else cs).clamp(min=0).numpy()[:, 0]
        out *= term ** w[level]
        pad = [n % 2 for n in x.shape[2:]]
        x, y = pool(x, kernel_size=2, padding=pad), pool(y, kernel_size=2, padding=pad)
    return out


@pytest.mark.parametrize(
    ("shape", "levels"),
    [((3, 256, 256), 5), ((2, 200, 181), 5), ((2, 64, 90), 3), ((1, 24, 30, 27), 2)],
)
def test_msssim_equals_pytorch_msssim(path, shape, levels):
    pytest.importorskip("pytorch_msssim")
    rng = np.random.default_rng(shape[1])
    t = rng.random(shape)
    p = np.clip(t + rng.normal(0, 0.15, shape), 0, 1)
    assert msssim.n_scales(shape[1:]) == levels
    want = _torch_msssim(t, p, levels)
    got = msssim.msssim_batch(t, p, 1.0, kernel=path == "kernel")
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # as a metric of every protocol: max01 of images whose target maximum is 1
    t[:, 0, 0] = 1.0
    proto = "max01" if len(shape) == 3 else "volume3d"
    res = metrics.compute_batch(proto, p, t)
    np.testing.assert_allclose(res["msssim"], 100 * _torch_msssim(t, p, levels), atol=1e-3)


def test_msssim_scales_and_small_inputs():
    # an odd side pools to (n + 1) / 2: 21 -> 11 still fits a second scale
    sides = (10, 11, 20, 21, 43, 176, 512)
    assert [msssim.n_scales((n, n)) for n in sides] == [0, 1, 1, 2, 3, 5, 5]
    assert msssim.weights(5).tolist() == list(msssim.WEIGHTS)
    assert msssim.weights(2).sum() == pytest.approx(1.0)
    x = np.random.default_rng(0).random((2, 9, 30))
    assert np.isnan(msssim.msssim_batch(x, x, 1.0)).all()  # not one scale fits
    assert msssim.msssim_batch(x[:, :, :] + 0, x, 1.0).shape == (2,)
    y = np.random.default_rng(1).random((2, 40, 40))
    assert msssim.msssim_batch(y, y, 1.0) == pytest.approx([1.0, 1.0], abs=1e-9)


# ------------------------------------------------------------------------- regions
def _lesion_case(rng, shape=(20, 22, 18)):
    """A volume whose lesion is predicted exactly and whose healthy tissue is noisy (noise kept
    6 voxels away from the lesion, so that no SSIM window over the lesion sees it)."""
    from scipy import ndimage

    t = 0.2 + 0.6 * ndimage.gaussian_filter(rng.random(shape), 2)
    brain = np.zeros(shape, dtype=bool)
    brain[2:-2, 2:-2, 2:-2] = True
    labels = np.where(brain, 3, 0).astype(np.uint8)
    labels[8:13, 9:14, 7:12] = 4
    lesion = labels == 4
    far = brain & ~ndimage.binary_dilation(lesion, np.ones((3, 3, 3)), iterations=6)
    t[0, 0, 0] = 1.0  # both divided by 1 under volume3d
    p = t.copy()
    p[far] += rng.normal(0, 0.05, int(far.sum()))
    return p, t, brain, labels


def test_region_metrics_perfect_lesion_noisy_healthy_tissue(path):
    p, t, brain, labels = _lesion_case(np.random.default_rng(4))
    res = metrics.compute("volume3d", p, t, brain, labels)
    assert res["psnr_lesion"] == math.inf and res["mae_lesion"] == 0.0
    assert res["ssim_lesion"] == pytest.approx(100.0, abs=1e-6)
    assert res["ssim_gauss_lesion"] == pytest.approx(100.0, abs=1e-6)
    healthy = brain & (labels != 4)
    mse = np.mean((t[healthy] - p[healthy]) ** 2)
    assert res["psnr_healthy"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-6)
    assert res["mae_healthy"] == pytest.approx(np.abs(t - p)[healthy].mean(), abs=1e-9)
    _, smap = structural_similarity(t, p, data_range=1.0, full=True)
    assert res["ssim_healthy"] == pytest.approx(100 * smap[healthy].mean(), abs=1e-6)
    assert res["ssim_healthy"] < 99 and res["psnr_healthy"] < 40
    # whole-volume and brain values do not change with labels
    plain = metrics.compute("volume3d", p, t, brain)
    assert {k: res[k] for k in plain} == pytest.approx(plain, nan_ok=True)
    # 2D: the slices through the lesion get the same perfect lesion values
    rows = metrics.compute_volume("max01", p, t, brain, labels)
    lesion_slices = {z for z, k, _ in rows if k == "psnr_lesion"}
    assert lesion_slices == set(range(7, 12))
    assert all(v == math.inf for _, k, v in rows if k == "psnr_lesion")


@pytest.mark.parametrize("protocol", ["max01", "volume3d", "brasyn", "icon_mean", "syndiff"])
def test_batched_region_metrics_equal_the_reference(path, protocol):
    rng = np.random.default_rng(9)
    dims = metrics.get_protocol(protocol).dims
    shape = (3, 16, 14, 13) if dims == 3 else (4, 24, 20)
    t, p = _volumes(rng, shape)
    m = t > 0.2
    labels = np.where(m, 3, 0).astype(np.uint8)
    labels[0, 3:9, 4:10] = 4  # item 0 has a lesion, the others none
    ref = metrics_reference.compute_batch(protocol, p, t, m, labels)
    res = metrics.compute_batch(protocol, p, t, m, labels)
    assert list(res) == list(ref)
    has_regions = metrics.get_protocol(protocol).mask == "region"
    assert ("ssim_lesion" in res) == has_regions and "msssim" in res
    for k in ref:
        np.testing.assert_allclose(res[k], ref[k], rtol=0, atol=1e-6, err_msg=k)
    if has_regions:
        assert np.isfinite(res["psnr_lesion"][0]) and np.isnan(res["psnr_lesion"][1:]).all()
        assert np.isfinite(res["psnr_healthy"]).all()


def test_no_lesion_rows_without_lesion():
    rng = np.random.default_rng(2)
    p, t, brain, labels = _lesion_case(rng)
    ixi = np.where(labels == 4, 3, labels)  # CSF/GM/WM only, as IXI's tissue maps
    for proto in ("max01", "volume3d", "brasyn"):
        rows = metrics.compute_volume(proto, p, t, brain, ixi)
        names = {k for _, k, _ in rows}
        assert not any(k.endswith("_lesion") for k in names), proto
        assert {"psnr_healthy", "ssim_healthy", "msssim"} <= names
        assert not any(np.isnan(v) for _, k, v in rows if k.endswith("_healthy"))
    rows = metrics.compute_volume("max01", p, t, brain, labels)
    per_slice = {z: {k for zz, k, _ in rows if zz == z} for z, _, _ in rows}
    for z, names in per_slice.items():
        assert ("psnr_lesion" in names) == (7 <= z < 12), z
    with pytest.raises(ValueError, match="label shape"):
        metrics.compute_batch("max01", p[None, ..., 0], t[None, ..., 0], None, labels)


# ------------------------------------------------------------- end to end and the table
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _store_with_lesion(tmp: Path) -> Path:
    """Two subjects, 24 px, 12 slices: s0 with a lesion (label 4), s1 without."""
    from scipy import ndimage

    from mrbench.slices import SubjectVolumes, build_split

    rng = np.random.default_rng(0)
    subjects = []
    for i in range(2):
        shape = (24, 24, 14)
        mask = np.zeros(shape, dtype=np.uint8)
        mask[3:21, 3:21, 1:13] = 1
        t1 = (0.2 + 0.7 * ndimage.gaussian_filter(rng.random(shape), 1.5)) * mask
        t2 = (1.0 - t1) * mask
        labels = 3 * mask
        if i == 0:
            labels[9:15, 9:15, 4:9] = 4
        d = tmp / "subjects" / f"s{i}"
        d.mkdir(parents=True)
        vols = {"t1": t1, "t2": t2, "mask": mask, "label": labels.astype(np.uint8)}
        for name, arr in vols.items():
            nib.save(nib.Nifti1Image(np.asarray(arr, np.float32), AFFINE), d / f"{name}.nii.gz")
        subjects.append(SubjectVolumes.in_dir(f"s{i}", d))
    return build_split(subjects, tmp / "slices" / "test", 24, 12)  # 3D: 11-voxel windows fit


def _predictions(tmp: Path, name: str, noise: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    out = tmp / "pred" / name
    out.mkdir(parents=True)
    for s in ("s0", "s1"):
        img = nib.load(tmp / "subjects" / s / "t2.nii.gz")
        t2 = np.asarray(img.dataobj, dtype=np.float32)
        pred = np.clip(t2 + rng.normal(0, noise, t2.shape), 0, None).astype(np.float32)
        nib.save(nib.Nifti1Image(pred, AFFINE), out / f"{s}.nii.gz")
    return out


def test_metrics_of_a_labelled_split_and_the_protocols_table(tmp_path):
    store = _store_with_lesion(tmp_path)
    label = np.load(store / "label.npy")
    index = pd.read_csv(store / "index.tsv", sep="\t")
    lesion_slices = {
        (r.subject, int(r.slice)) for r in index.itertuples() if (label[r.row] == 4).any()
    }
    assert lesion_slices and {s for s, _ in lesion_slices} == {"s0"}
    files = []
    for k, (method, noise) in enumerate((("good", 0.01), ("fair", 0.05), ("poor", 0.15))):
        pred = _predictions(tmp_path, method, noise, k)
        out = tmp_path / f"{method}.csv"
        args = ["metrics", "--pred-dir", str(pred), "--store", str(store)]
        args += ["--direction", "t1_to_t2", "--dataset", "toy", "--method", method]
        assert main([*args, "--out", str(out)]) == 0
        files.append(str(out))
    df = pd.read_csv(files[0])
    assert {"brasyn", "volume3d", "max01"} <= set(df["protocol"])
    assert {"msssim", "ssim_lesion", "ssim_healthy"} <= set(df["metric"])
    lesion = df[df["metric"].str.endswith("_lesion")]
    two_d = lesion[lesion["slice"] >= 0]
    assert set(zip(two_d["subject"], two_d["slice"], strict=True)) == lesion_slices
    assert set(lesion[lesion["slice"] == -1]["subject"]) == {"s0"}  # 3D: s1 has no lesion
    assert set(lesion["protocol"]) == {"max01", "volume3d", "brasyn"}
    assert lesion["value"].notna().all()
    healthy = df[(df["metric"] == "psnr_healthy") & (df["protocol"] == "brasyn")]
    assert set(healthy["subject"]) == {"s0", "s1"}

    tidy = tmp_path / "tidy.csv.gz"
    assert main(["report", "tidy", "--inputs", *files, "--out", str(tidy)]) == 0
    prefix, fig = tmp_path / "tables" / "protocols", tmp_path / "fig" / "protocols_tau"
    args = ["report", "protocols", "--tidy", str(tidy), "--out", str(prefix), "--figure", str(fig)]
    assert main(args) == 0
    table = pd.read_csv(prefix.with_suffix(".csv"))
    ranks = table[(table["kind"] == "rank") & (table["protocol"] == "brasyn")]
    psnr = ranks[ranks["metric"] == "psnr"].set_index("method")["rank"]
    assert psnr.to_dict() == {"good": 1.0, "fair": 2.0, "poor": 3.0}
    taus = table[table["kind"] == "tau"]
    same = taus[(taus["protocol_a"] == taus["protocol_b"]) & (taus["metric_a"] == taus["metric_b"])]
    assert (same["tau"] == 1.0).all() and (taus["n_methods"] == 3).all()
    md = prefix.with_suffix(".md").read_text()
    assert "brasyn" in md and "MS-SSIM" in md and "SSIM lesion" in md and "τ" in md
    tex = prefix.with_suffix(".tex").read_text()
    assert "\\toprule" in tex and "brasyn" in tex
    assert fig.with_suffix(".png").stat().st_size > 0 and fig.with_suffix(".pdf").exists()
    import latex_compile as latex

    if latex.have_pdflatex():
        latex.compile_table(prefix.with_suffix(".tex"), name="protocols")


def test_kendall_tau_of_reversed_and_tied_rankings():
    from mrbench.reporting.protocol_ranks import protocol_rankings

    rows = []
    for m, a in {"x": 30.0, "y": 25.0, "z": 20.0}.items():
        rows += [
            {"dataset": "d", "direction": "t1_to_t2", "method": m, "protocol": "max01",
             "metric": "psnr", "mean": a},
            {"dataset": "d", "direction": "t1_to_t2", "method": m, "protocol": "syndiff",
             "metric": "psnr", "mean": -a},
            {"dataset": "d", "direction": "t1_to_t2", "method": m, "protocol": "max01",
             "metric": "ssim", "mean": 50.0},
        ]  # fmt: skip
    ranks, taus = protocol_rankings(pd.DataFrame(rows), ["psnr", "ssim"])
    got = {(x.protocol_a, x.metric_a, x.protocol_b, x.metric_b): x.tau for x in taus.itertuples()}
    assert got[("max01", "psnr", "syndiff", "psnr")] == pytest.approx(-1.0)
    assert math.isnan(got[("max01", "psnr", "max01", "ssim")])  # a constant ranking
    tied = ranks[(ranks["protocol"] == "max01") & (ranks["metric"] == "ssim")]
    assert (tied["rank"] == 2.0).all()


def test_metrics_cli_with_labels_prints_region_values(tmp_path, capsys):
    import json

    p, t, brain, labels = _lesion_case(np.random.default_rng(6))
    files = {}
    for name, arr in {"p": p, "t": t, "m": brain, "l": labels}.items():
        files[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(arr, np.float32), AFFINE), files[name])
    args = ["metrics", "--pred", str(files["p"]), "--target", str(files["t"])]
    args += ["--mask", str(files["m"]), "--labels", str(files["l"]), "--protocol", "brasyn"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["protocol"] == "brasyn" and out["labels_file"] == str(files["l"])
    assert {"psnr_lesion", "ssim_healthy", "msssim"} <= set(out["metrics"])
    assert out["metrics"]["psnr_lesion"]["n"] == 1
