"""Contrasts as data: the phantom's PDw and FLAIR, the contrasts a dataset needs, and slice stores
holding more than T1w and T2w."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from mrbench.datasets.kind import needed_contrasts, needed_volumes
from mrbench.datasets.phantom_volumes import (
    PhantomSettings,
    _soft_depth,
    csf_null_ti,
    make_subject,
)
from mrbench.errors import ConfigError, InputError

ALL = ("t1", "t2", "pd", "flair")
#: noise, bias and every jitter off: pure-tissue voxels follow the equations exactly
QUIET = PhantomSettings(
    voxel_size=3.0, noise=0.0, bias=0.0, relaxation_jitter=0.0, timing_jitter=0.0
)
NOISY = PhantomSettings(voxel_size=3.0)


@pytest.fixture(scope="module")
def quiet() -> dict:
    return make_subject(0, seed=3, settings=QUIET, contrasts=ALL)


@pytest.fixture(scope="module", params=[(0, 11), (1, 12), (2, 13)])
def noisy(request: pytest.FixtureRequest) -> dict:
    index, seed = request.param
    return make_subject(index, seed=seed, settings=NOISY, contrasts=ALL)


def _pure(subject: dict, cls: str, level: float = 0.9) -> np.ndarray:
    return subject["fractions"][cls] > level


def _cortex(subject: dict, settings: PhantomSettings) -> np.ndarray:
    """Pure grey matter near the surface (not the iron-rich deep grey matter)."""
    mask = subject["mask"] > 0
    shallow = _soft_depth(mask, settings.deep_gm_mm, settings.voxel_size) == 0
    return _pure(subject, "gm") & shallow


# ----------------------------------------------------------------- phantom: contrast properties
def test_flair_suppresses_csf(noisy: dict) -> None:
    csf, wm = _pure(noisy, "csf", 0.95), _pure(noisy, "wm")
    assert csf.sum() > 50 and wm.sum() > 50
    ratio = noisy["flair"][csf].mean() / noisy["flair"][wm].mean()
    assert ratio < 0.10, ratio
    # T2w CSF is the brightest tissue: the suppression is FLAIR's, not the tissue's
    assert noisy["t2"][csf].mean() > 1.5 * noisy["t2"][wm].mean()


def test_flair_lesions_brighter_than_white_matter(noisy: dict) -> None:
    lesion, wm = _pure(noisy, "lesion"), _pure(noisy, "wm")
    assert lesion.sum() >= 3
    assert noisy["flair"][lesion].mean() > 1.5 * noisy["flair"][wm].mean()


def test_pd_grey_matter_brighter_than_white_matter(noisy: dict) -> None:
    gm, wm = _cortex(noisy, NOISY), _pure(noisy, "wm")
    assert gm.sum() > 20
    assert noisy["pd"][gm].mean() > noisy["pd"][wm].mean()


# ------------------------------------------------------------- phantom: values of the equations
def _spin_echo(pd: float, t1: float, t2: float, tr: float, te: float) -> float:
    return pd * (1 - np.exp(-tr / t1)) * np.exp(-te / t2)


#: the documented values (docs/datasets.md): tissues (PD, T1 ms, T2 ms)
WM, LESION, CSF = (0.69, 790.0, 92.0), (0.76, 1000.0, 300.0), (1.00, 4000.0, 2000.0)


def test_flair_inversion_time_nulls_csf() -> None:
    ti = csf_null_ti(4000.0, 9000.0)
    assert ti == pytest.approx(4000.0 * np.log(2.0 / (1.0 + np.exp(-9000.0 / 4000.0))))
    assert ti == pytest.approx(2372.0, abs=1.0)
    assert abs(1 - 2 * np.exp(-ti / 4000.0) + np.exp(-9000.0 / 4000.0)) < 1e-12


def _reference_voxels(quiet: dict) -> dict[str, np.ndarray]:
    """Pure white matter, lesion and CSF voxels (with the jitter off, flowing CSF has CSF's
    relaxation values; only T2w gives it another signal, :data:`CONTRAST_FACTORS`)."""
    return {
        "wm": _pure(quiet, "wm", 0.999),
        # a lesion's fraction reaches 0.99, the rest white matter: values within 1 %
        "lesion": _pure(quiet, "lesion", 0.99),
        "csf": _pure(quiet, "csf", 0.999),
    }


@pytest.mark.parametrize(
    ("contrast", "tr", "te"),
    [("t1", 500.0, 12.0), ("t2", 4000.0, 100.0), ("pd", 4000.0, 15.0)],
)
def test_spin_echo_contrasts_follow_the_equation(
    quiet: dict, contrast: str, tr: float, te: float
) -> None:
    """Images are scaled by one factor per subject and contrast (1000 / 99th percentile), so
    the ratios of pure-tissue values are the equation's."""
    vox = _reference_voxels(quiet)
    assert vox["lesion"].sum() >= 3 and vox["wm"].sum() > 50 and vox["csf"].sum() > 10
    img = quiet[contrast].astype(np.float64)
    wm = img[vox["wm"]].mean()
    assert np.ptp(img[vox["wm"]]) < 3e-3 * wm  # pure voxels: one value up to 0.1 % partial volume
    if contrast != "t2":  # T2w CSF mixes in the flow voids
        want_csf = _spin_echo(*CSF, tr, te) / _spin_echo(*WM, tr, te)
        assert img[vox["csf"]].mean() / wm == pytest.approx(want_csf, rel=2e-3)
    want_lesion = _spin_echo(*LESION, tr, te) / _spin_echo(*WM, tr, te)
    assert img[vox["lesion"]].mean() / wm == pytest.approx(want_lesion, rel=1e-2)


def test_known_values_by_hand(quiet: dict) -> None:
    """PDw and FLAIR ratios worked out by hand from the documented values."""
    vox = _reference_voxels(quiet)

    def ratio(contrast: str, tissue: str) -> float:
        img = quiet[contrast].astype(np.float64)
        return img[vox[tissue]].mean() / img[vox["wm"]].mean()

    # PDw, TR 4000, TE 15: WM 0.69 (1 - e^-5.063) e^-0.1630 = 0.58248;
    # CSF 1.00 (1 - e^-1) e^-0.0075 = 0.62740; lesion 0.76 (1 - e^-4) e^-0.05 = 0.70969
    assert ratio("pd", "csf") == pytest.approx(0.62740 / 0.58248, rel=2e-3)
    assert ratio("pd", "lesion") == pytest.approx(0.70969 / 0.58248, rel=1e-2)
    # FLAIR, TR 9000, TE 120, TI 2371.8: WM 0.69 |1 - 2 e^-3.0022 + e^-11.39| e^-1.3043 =
    # 0.16863; lesion 0.76 |1 - 2 e^-2.3718 + e^-9| e^-0.4 = 0.41443; CSF 0 (nulled)
    assert ratio("flair", "lesion") == pytest.approx(0.41443 / 0.16863, rel=1e-2)
    assert ratio("flair", "csf") < 1e-3


def test_flair_follows_the_inversion_recovery_equation(quiet: dict) -> None:
    tr, te = 9000.0, 120.0
    ti = csf_null_ti(CSF[1], tr)

    def ir(pd: float, t1: float, t2: float) -> float:
        return pd * abs(1 - 2 * np.exp(-ti / t1) + np.exp(-tr / t1)) * np.exp(-te / t2)

    vox = _reference_voxels(quiet)
    img = quiet["flair"].astype(np.float64)
    wm = img[vox["wm"]].mean()
    assert img[vox["lesion"]].mean() / wm == pytest.approx(ir(*LESION) / ir(*WM), rel=1e-2)
    assert img[vox["csf"]].max() < 2e-3 * wm  # 0 up to 0.1 % partial volume


# ------------------------------------------------------------------ phantom: T1w/T2w unchanged
def test_t1w_t2w_do_not_move_with_other_contrasts() -> None:
    settings = PhantomSettings(voxel_size=6.0)
    base = make_subject(1, seed=7, settings=settings)
    more = make_subject(1, seed=7, settings=settings, contrasts=ALL)
    only_flair = make_subject(1, seed=7, settings=settings, contrasts=("t2", "flair"))
    assert "pd" not in base and "flair" not in base
    for c in ("t1", "t2", "mask", "label"):
        np.testing.assert_array_equal(base[c], more[c])
    # each extra contrast has its own generator: the same whichever others are made
    np.testing.assert_array_equal(only_flair["flair"], more["flair"])
    assert not np.array_equal(more["pd"], more["t2"])


def test_contrasts_share_the_brain_and_edges() -> None:
    subj = make_subject(0, seed=5, settings=PhantomSettings(voxel_size=6.0), contrasts=ALL)
    mask = subj["mask"] > 0
    edge = mask ^ ndimage.binary_erosion(mask)
    grads = {
        c: ndimage.gaussian_gradient_magnitude(subj[c], 1.0)[edge] for c in ("t1", "pd", "flair")
    }
    for c in ("pd", "flair"):
        assert subj[c][mask].mean() > 10 * subj[c][~mask].mean()
        assert np.corrcoef(grads["t1"], grads[c])[0, 1] > 0.3


def test_unknown_phantom_contrast() -> None:
    with pytest.raises(ValueError, match="t1ce"):
        make_subject(0, seed=1, settings=PhantomSettings(voxel_size=8.0), contrasts=("t1ce",))


# --------------------------------------------------------------------------- needed contrasts
def test_needed_contrasts_per_kind() -> None:
    assert needed_contrasts("phantom", {}) == ("t1", "t2")
    assert needed_contrasts("phantom", {"pairs": [["flair", "t2"]]}) == ("t2", "flair")
    # IXI registers to T1 and segments it: t1 always
    assert needed_contrasts("ixi", {"pairs": [["t2", "pd"]]}) == ("t1", "t2", "pd")
    assert needed_contrasts("brats2018", {"pairs": [["t2", "flair"], ["t1", "t1ce"]]}) == (
        "t1",
        "t1ce",
        "t2",
        "flair",
    )
    assert needed_contrasts("msd_brats", {"pairs": [["t2", "flair"]]}) == ("t1", "t2", "flair")
    assert needed_volumes("phantom", {"pairs": [["t2", "pd"]]}) == ("t2", "pd", "mask", "label")


def test_needed_contrasts_refuses_what_a_kind_does_not_offer() -> None:
    with pytest.raises(ConfigError, match=r"datasets\.ixi\.pairs.*'flair'.*t1, t2, pd"):
        needed_contrasts("ixi", {"pairs": [["t2", "flair"]]})
    with pytest.raises(ConfigError, match=r"datasets\.mine\.pairs.*'t1ce'"):
        needed_contrasts("phantom", {"pairs": [["t1", "t1ce"]]}, dataset="mine")
    with pytest.raises(ConfigError, match=r"datasets\.phantom\.pairs.*two different"):
        needed_contrasts("phantom", {"pairs": [["t2", "t2"]]})
    with pytest.raises(ConfigError, match=r"datasets\.phantom\.pairs"):
        needed_contrasts("phantom", {"pairs": ["t1", "t2"]})


def test_third_party_kinds_default_to_t1_t2() -> None:
    from mrbench.datasets.kind import DatasetKind

    assert DatasetKind.contrasts == ("t1", "t2")
    assert DatasetKind.reference == "t1"


# ------------------------------------------------------------------ slice stores of any contrast
def _phantom_subjects(root: Path, contrasts: tuple[str, ...], n: int = 2) -> list:
    from mrbench.datasets.phantom import prepare_subject
    from mrbench.datasets.phantom_volumes import subject_ids, write_phantom
    from mrbench.slices import SubjectVolumes

    settings = PhantomSettings(voxel_size=8.0)
    write_phantom(root / "raw", n, 5, settings, contrasts=contrasts)
    out = []
    for sid in subject_ids(n):
        prepare_subject(root / "raw", sid, root / "subjects" / sid, contrasts)
        out.append(SubjectVolumes.in_dir(sid, root / "subjects" / sid, contrasts))
    return out


def test_store_of_four_contrasts_serves_any_pair(tmp_path: Path) -> None:
    from mrbench.slices import SliceStore, build_split

    subjects = _phantom_subjects(tmp_path, ALL)
    store_dir = build_split(subjects, tmp_path / "slices" / "train", 16, 4, contrasts=ALL)
    assert sorted(p.name for p in store_dir.glob("*.npy")) == sorted(
        [f"{c}.npy" for c in ALL] + ["label.npy", "mask.npy"]
    )
    meta = json.loads((store_dir / "meta.json").read_text())
    assert meta["contrasts"] == list(ALL)
    arrays = {c: np.load(store_dir / f"{c}.npy") for c in ALL}
    # each array holds its own contrast: FLAIR differs from T2w, PDw from T1w
    assert not np.allclose(arrays["flair"], arrays["t2"])
    assert not np.allclose(arrays["pd"], arrays["t1"])
    store = SliceStore(store_dir, pair=("t2", "flair"))
    assert store.contrasts == ALL
    item = store.pair(1, 2)
    assert item.contrasts == ("t2", "flair")
    np.testing.assert_allclose(item["a"][0].numpy(), 2 * arrays["t2"][1] - 1, atol=1e-6)
    np.testing.assert_allclose(item["b"][0].numpy(), 2 * arrays["flair"][2] - 1, atol=1e-6)
    # the default pair of the same store reads T1w and T2w
    default = SliceStore(store_dir)[0]
    np.testing.assert_allclose(default["a"][0].numpy(), 2 * arrays["t1"][0] - 1, atol=1e-6)


def test_default_store_is_t1_t2_only(tmp_path: Path) -> None:
    from mrbench.slices import SliceStore, build_split

    subjects = _phantom_subjects(tmp_path, ("t1", "t2"))
    store_dir = build_split(subjects, tmp_path / "slices" / "test", 16, 2)
    assert json.loads((store_dir / "meta.json").read_text())["contrasts"] == ["t1", "t2"]
    assert not (store_dir / "pd.npy").exists()
    with pytest.raises(InputError, match="holds t1, t2, not flair"):
        SliceStore(store_dir, pair=("t2", "flair"))


def test_store_refuses_a_subject_without_a_contrast(tmp_path: Path) -> None:
    from mrbench.slices import SubjectVolumes, build_split

    (subject,) = _phantom_subjects(tmp_path, ("t2", "flair"), n=1)
    with pytest.raises(InputError, match=r"phantom001/t1.nii.gz: file not found"):
        build_split(
            [SubjectVolumes.in_dir("phantom001", tmp_path / "subjects" / "phantom001")],
            tmp_path / "out",
            16,
            2,
        )
    with pytest.raises(InputError, match="subject phantom001: no pd volume"):
        build_split([subject], tmp_path / "out", 16, 2, contrasts=("t2", "pd"))
    assert not (tmp_path / "out").exists()


def test_slices_cli_takes_contrasts(tmp_path: Path) -> None:
    from mrbench.cli import main
    from mrbench.datasets.splits import write_splits

    _phantom_subjects(tmp_path, ("t2", "pd"), n=3)
    df = pd.DataFrame(
        {"subject": ["phantom001", "phantom002", "phantom003"], "split": ["train", "val", "test"]}
    )
    splits = write_splits(df, tmp_path / "split.tsv")
    argv = ["slices", "--subjects-dir", str(tmp_path / "subjects"), "--splits", str(splits)]
    argv += ["--out", str(tmp_path / "slices"), "--size", "16", "--slices-per-subject", "2"]
    assert main([*argv, "--contrasts", "pd", "t2"]) == 0
    meta = json.loads((tmp_path / "slices" / "test" / "meta.json").read_text())
    assert meta["contrasts"] == ["t2", "pd"]  # in the order of mrbench.domain.CONTRASTS


def test_phantom_kind_writes_the_needed_contrasts(tmp_path: Path) -> None:
    from mrbench.config.schema import dataset_settings
    from mrbench.datasets.kind import get_dataset_kind

    settings = dataset_settings("phantom", {"kind": "phantom", "n_subjects": 3, "voxel_size": 8.0})
    settings["pairs"] = [["t2", "flair"]]
    get_dataset_kind("phantom").acquire("phantom002", settings, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "flair.nii.gz",
        "label.nii.gz",
        "mask.nii.gz",
        "t2.nii.gz",
    ]


# ------------------------------------------------------------------------------------ IXI PD
def _ixi_tar(path: Path, subjects: list[str], mod: str) -> Path:
    from conftest import write_tar

    return write_tar(path, [(f"{s}-{mod}.nii.gz", b"\x1f\x8b" + s.encode()) for s in subjects])


def test_ixi_pd_archive_checked_and_extracted(tmp_path: Path, capsys) -> None:
    from mrbench.cli import main
    from mrbench.datasets.ixi import MD5, check_archives, extract_subject
    from mrbench.datasets.splits import write_splits

    assert MD5["PD"] == "88ecd9d1fa33cb4a2278183b42ffd749"
    listed = ["IXI002-Guys-0828", "IXI012-HH-1211", "IXI013-HH-1212"]
    df = pd.DataFrame({"subject": listed, "split": ["train", "val", "test"]})
    split = write_splits(df, tmp_path / "ixi.tsv")
    t1 = _ixi_tar(tmp_path / "IXI-T1.tar", listed, "T1")
    t2 = _ixi_tar(tmp_path / "IXI-T2.tar", listed, "T2")
    pd_tar = _ixi_tar(tmp_path / "IXI-PD.tar", listed, "PD")
    assert check_archives(t1, t2, split, pd_tar) == listed
    got = extract_subject(None, None, listed[0], tmp_path / "raw", pd_tar=pd_tar)
    assert list(got) == ["pd"] and got["pd"].name == "pd.nii.gz"
    assert got["pd"].read_bytes().endswith(listed[0].encode())
    # a listed subject without PD stops the check with one line naming it
    short = _ixi_tar(tmp_path / "IXI-PD-short.tar", listed[:2], "PD")
    out = tmp_path / "check.txt"
    argv = ["ixi", "check", "--t1-tar", str(t1), "--t2-tar", str(t2), "--pd-tar", str(short)]
    assert main([*argv, "--split", str(split), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "IXI013-HH-1212 (PD)" in err, err
    assert not out.exists()
    # without PD in the pairs, the PD archive is not needed at all
    assert check_archives(t1, t2, split) == listed
    with pytest.raises(InputError, match="lacks PD"):
        extract_subject(None, None, listed[2], tmp_path / "raw2", pd_tar=short)


SHARED = Path(__file__).resolve().parents[2] / "shared" / "testdata"


@pytest.mark.slow
def test_ixi_pd_moves_with_the_t2_transform(tmp_path: Path) -> None:
    """../shared/testdata has no PD volume: a stand-in on the T2's grid, proportional to the T2
    (2 x T2), must come out of preprocessing equal to the registered T2 after normalisation -
    the T2's transform applied to it, nothing registered separately."""
    import nibabel as nib

    from mrbench.cli import main

    t1 = SHARED / "ixi" / "IXI002-Guys-0828-T1_brain.nii.gz"
    t2 = SHARED / "ixi" / "IXI002-Guys-0828-T2_brain.nii.gz"
    if not t1.exists():
        pytest.skip(f"real test scans not found at {SHARED} (a fresh clone without ../shared)")
    img = nib.load(str(t2))
    pd_path = tmp_path / "IXI002-Guys-0828-PD.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32) * 2, img.affine), str(pd_path))
    out = tmp_path / "IXI002"
    argv = ["preprocess", "--t1", str(t1), "--t2", str(t2), "--pd", str(pd_path)]
    argv += ["--contrasts", "t1", "t2", "pd", "--out", str(out), "--skull-stripped"]
    assert main(argv) == 0
    names = sorted(p.name for p in out.glob("*.nii.gz"))
    assert names == ["label.nii.gz", "mask.nii.gz", "pd.nii.gz", "t1.nii.gz", "t2.nii.gz"]
    pd_out = nib.load(str(out / "pd.nii.gz"))
    t2_out = nib.load(str(out / "t2.nii.gz"))
    assert np.allclose(pd_out.affine, t2_out.affine)
    np.testing.assert_allclose(pd_out.get_fdata(), t2_out.get_fdata(), atol=1e-5)
    qc = json.loads((out / "qc.json").read_text())
    assert qc["registration"]["moved_with_t2"] == ["pd"]
    assert qc["same_grid_as_t2"] == {"pd": True}


def test_preprocess_needs_the_pd_volume(tmp_path: Path, capsys) -> None:
    from mrbench.cli import main

    argv = ["preprocess", "--t1", "a.nii.gz", "--t2", "b.nii.gz", "--out", str(tmp_path)]
    assert main([*argv, "--contrasts", "t1", "pd"]) != 0
    assert "contrast pd: no input volume given (--pd)" in capsys.readouterr().err


# ------------------------------------------------------------------------------ BraTS and MSD
BRATS_LIKE = SHARED / "brats_like"
needs_brats = pytest.mark.skipif(
    not (BRATS_LIKE / "case01_t1.nii.gz").exists(),
    reason=f"BraTS-like test case not found at {BRATS_LIKE} (a fresh clone without ../shared)",
)
#: BraTS 2018 file suffix -> the test case's file (its T1ce is named t1c)
BRATS_FILES = {"t1": "t1", "t1ce": "t1c", "t2": "t2", "flair": "flair"}


def _small_brats(root: Path, cases: list[str], drop: dict[str, str] | None = None) -> Path:
    """Cases in BraTS 2018 naming, each the shared case at 4 mm (fast)."""
    import nibabel as nib

    drop = drop or {}
    small = {}
    for mod, src in BRATS_FILES.items():
        img = nib.load(str(BRATS_LIKE / f"case01_{src}.nii.gz"))
        aff = img.affine.copy()
        aff[:3, :3] *= 4
        small[mod] = nib.Nifti1Image(np.asarray(img.dataobj, np.float32)[::4, ::4, ::4], aff)
    for case in cases:
        d = root / case
        d.mkdir(parents=True)
        for mod, img in small.items():
            if drop.get(case) != mod:
                nib.save(img, str(d / f"{case}_{mod}.nii.gz"))
    return root


@needs_brats
def test_brats_imports_t1ce_and_flair_when_needed(tmp_path: Path, capsys) -> None:
    import nibabel as nib

    from mrbench.cli import main

    cases = ["Brats18_A_1", "Brats18_B_1", "Brats18_C_1"]
    src = _small_brats(tmp_path / "src", cases)
    out = tmp_path / "subjects"
    argv = ["import-brats", "--source", str(src), "--out", str(out), "--workdir", str(tmp_path)]
    argv += ["--splits", str(tmp_path / "brats.tsv"), "--contrasts", "t2", "flair", "t1ce"]
    assert main(argv) == 0
    names = sorted(p.name for p in (out / cases[0]).glob("*.nii.gz"))
    assert names == [f"{c}.nii.gz" for c in ("flair", "label", "mask", "t1", "t1ce", "t2")]
    mask = nib.load(str(out / cases[0] / "mask.nii.gz")).get_fdata() > 0
    for mod in BRATS_FILES:
        vol = nib.load(str(out / cases[0] / f"{mod}.nii.gz")).get_fdata()
        assert vol.min() >= 0 and vol.max() <= 1 and not vol[~mask].any()
        raw = nib.load(str(src / cases[0] / f"{cases[0]}_{mod}.nii.gz"))
        ras = np.asarray(nib.as_closest_canonical(raw).dataobj)
        assert np.corrcoef(vol[mask], ras[mask])[0, 1] > 0.99, mod  # its own file
    # a case missing a needed modality stops the import with one line naming it
    bad = _small_brats(tmp_path / "bad", cases, drop={"Brats18_B_1": "flair"})
    argv = ["import-brats", "--source", str(bad), "--out", str(tmp_path / "o"), "--workdir"]
    argv += [str(tmp_path), "--splits", str(tmp_path / "b.tsv"), "--contrasts", "t2", "flair"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Brats18_B_1 (flair)" in err, err
    # without FLAIR in the pairs, the same archive imports
    argv[argv.index("flair")] = "t1"
    assert main(argv) == 0


@needs_brats
def test_msd_imports_the_channels_of_the_needed_contrasts(tmp_path: Path) -> None:
    import nibabel as nib

    from mrbench.datasets.msd import CHANNELS, import_msd

    vols = {}
    for mod in ("flair", "t1", "t1ce", "t2"):
        img = nib.load(str(BRATS_LIKE / f"case01_{BRATS_FILES[mod]}.nii.gz"))
        vols[mod] = np.asarray(img.dataobj, np.float32)[::4, ::4, ::4]
    aff = img.affine.copy()
    aff[:3, :3] *= 4
    channels = sorted(CHANNELS, key=CHANNELS.get)
    assert channels == ["flair", "t1", "t1ce", "t2"]  # MSD's order: FLAIR, T1w, T1gd, T2w
    data = np.stack([vols[m] for m in channels], -1)
    folder = tmp_path / "Task01" / "imagesTr"
    folder.mkdir(parents=True)
    for i in range(3):
        nib.save(nib.Nifti1Image(data, aff), str(folder / f"BRATS_{i + 1:03d}.nii.gz"))
    out = tmp_path / "subjects"
    import_msd(tmp_path / "Task01", out, tmp_path / "msd.tsv", contrasts=("flair", "t1ce"))
    written = sorted(p.name for p in (out / "BRATS_001").glob("*.nii.gz"))
    assert written == [f"{c}.nii.gz" for c in ("flair", "label", "mask", "t1", "t1ce")]
    mask = nib.load(str(out / "BRATS_001" / "mask.nii.gz")).get_fdata() > 0
    for mod in ("flair", "t1ce"):
        got = nib.load(str(out / "BRATS_001" / f"{mod}.nii.gz")).get_fdata()
        ref = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(vols[mod], aff)).dataobj)
        assert np.corrcoef(got[mask], ref[mask])[0, 1] > 0.99, mod
    # a case whose needed channel is empty stops the import with one line naming it
    data[..., CHANNELS["flair"]] = 0
    nib.save(nib.Nifti1Image(data, aff), str(folder / "BRATS_002.nii.gz"))
    with pytest.raises(InputError, match=r"BRATS_002.nii.gz: channel 0 \(FLAIR\) is all zero"):
        import_msd(tmp_path / "Task01", tmp_path / "o", tmp_path / "m.tsv", contrasts=("flair",))
