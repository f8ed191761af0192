"""The phantom dataset: deterministic per seed, realistic contrast ordering, voxel alignment."""

from __future__ import annotations

import numpy as np
import pytest

from mrbench.datasets.phantom_volumes import PhantomSettings, _template, make_subject

SETTINGS = PhantomSettings(voxel_size=6.0)


@pytest.fixture(scope="module")
def subj0() -> dict:
    return make_subject(0, seed=7, settings=SETTINGS)


def test_deterministic_per_seed(subj0: dict) -> None:
    again = make_subject(0, seed=7, settings=SETTINGS)
    for k in ("t1", "t2", "mask"):
        np.testing.assert_array_equal(subj0[k], again[k])
    other_seed = make_subject(0, seed=8, settings=SETTINGS)
    other_subject = make_subject(1, seed=7, settings=SETTINGS)
    assert not np.array_equal(subj0["t1"], other_seed["t1"])
    assert not np.array_equal(subj0["mask"], other_subject["mask"]), "subjects must differ"


def _tissue_means(subject: dict, settings: PhantomSettings) -> dict[str, dict[str, float]]:
    """Mean intensity per modality inside voxels that are (almost) pure GM, WM or CSF.

    The tissue fractions are recomputed by re-running the generator's sampling without noise and
    bias, so this checks the signal model end to end."""
    quiet = PhantomSettings(
        voxel_size=settings.voxel_size, noise=0.0, bias=0.0, relaxation_jitter=0.0
    )
    clean = make_subject(0, seed=7, settings=quiet)
    # identify pure tissues from the clean T1/T2 pair: the brightest T2 voxels are CSF, etc.
    mask = clean["mask"] > 0
    t2 = clean["t2"][mask]
    t1 = clean["t1"][mask]
    csf = t2 > np.percentile(t2, 97)
    wm = (t1 > np.percentile(t1, 90)) & ~csf
    gm = (np.abs(t1 - np.median(t1)) < 0.05 * np.median(t1)) & ~csf & ~wm
    means = {}
    for mod in ("t1", "t2"):
        v = subject[mod][mask]
        means[mod] = {"wm": v[wm].mean(), "gm": v[gm].mean(), "csf": v[csf].mean()}
    return means


def test_contrast_ordering(subj0: dict) -> None:
    m = _tissue_means(subj0, SETTINGS)
    assert m["t1"]["wm"] > m["t1"]["gm"] > m["t1"]["csf"], m["t1"]
    assert m["t2"]["wm"] < m["t2"]["gm"] < m["t2"]["csf"], m["t2"]


def test_signal_equation_ordering_from_tissue_maps() -> None:
    """Independent of any thresholds: pure-tissue signals from the spin-echo equation."""
    from mrbench.datasets.phantom_volumes import SEQUENCES, TISSUES

    def s(t: str, seq: str) -> float:
        p, q = TISSUES[t], SEQUENCES[seq]
        return p["pd"] * (1 - np.exp(-q["tr"] / p["t1"])) * np.exp(-q["te"] / p["t2"])

    assert s("wm", "t1") > s("gm", "t1") > s("csf", "t1")
    assert s("wm", "t2") < s("gm", "t2") < s("csf", "t2")


def test_voxel_alignment_and_shared_mask(subj0: dict) -> None:
    assert subj0["t1"].shape == subj0["t2"].shape == subj0["mask"].shape
    mask = subj0["mask"] > 0
    # both contrasts have signal exactly where the brain is: outside the mask only noise
    for mod in ("t1", "t2"):
        inside = subj0[mod][mask].mean()
        outside = subj0[mod][~mask].mean()
        assert inside > 10 * outside
    # the brain edge is at the same place in both contrasts: gradients of the two images
    # (smoothed) correlate strongly at the mask boundary
    from scipy import ndimage

    edge = mask ^ ndimage.binary_erosion(mask)
    g1 = ndimage.gaussian_gradient_magnitude(subj0["t1"], 1.0)[edge]
    g2 = ndimage.gaussian_gradient_magnitude(subj0["t2"], 1.0)[edge]
    assert np.corrcoef(g1, g2)[0, 1] > 0.3


def test_brain_volume_plausible(subj0: dict) -> None:
    ml = (subj0["mask"] > 0).sum() * SETTINGS.voxel_size**3 / 1000
    assert 1200 < ml < 2200, ml
    gm, wm, brain, _ = _template()
    assert brain.sum() / 1000 == pytest.approx(ml, rel=0.2)


# ---------------------------------------------------------------- what an intensity map can't do
QUIET = PhantomSettings(voxel_size=3.0, noise=0.0, bias=0.0, relaxation_jitter=0.0)


@pytest.fixture(scope="module")
def quiet0() -> dict:
    return make_subject(0, seed=3, settings=QUIET)


def _pure(subject: dict, cls: str, level: float = 0.9) -> np.ndarray:
    return subject["fractions"][cls] > level


def test_fractions_sum_to_the_brain_mask(quiet0: dict) -> None:
    total = sum(quiet0["fractions"].values())
    mask = quiet0["mask"] > 0
    np.testing.assert_allclose(total[mask], 1.0, atol=1e-5)
    assert np.all(total[~mask] == 0)
    assert set(quiet0["fractions"]) == {"wm", "gm", "csf", "lesion"}


def test_lesions_bright_in_t2w_and_isointense_in_t1w(quiet0: dict) -> None:
    lesion, wm = _pure(quiet0, "lesion"), _pure(quiet0, "wm")
    assert lesion.sum() >= 5, "every subject has at least one lesion of several voxels"
    t1_ratio = quiet0["t1"][lesion].mean() / quiet0["t1"][wm].mean()
    t2_ratio = quiet0["t2"][lesion].mean() / quiet0["t2"][wm].mean()
    assert abs(t1_ratio - 1) < 0.10, t1_ratio
    assert t2_ratio >= 2.0, t2_ratio
    # lesions lie in white matter: their neighbourhood is mostly WM, not CSF
    from scipy import ndimage

    rim = ndimage.binary_dilation(lesion, iterations=2) & ~lesion & (quiet0["mask"] > 0)
    assert quiet0["fractions"]["csf"][rim].mean() < 0.2


def test_lesions_differ_between_subjects() -> None:
    a = make_subject(0, seed=3, settings=QUIET)["fractions"]["lesion"] > 0.5
    b = make_subject(1, seed=3, settings=QUIET)["fractions"]["lesion"] > 0.5
    assert a.any() and b.any()
    assert (a & b).sum() < 0.5 * min(a.sum(), b.sum())


def test_t2w_is_not_a_function_of_t1w(quiet0: dict) -> None:
    """Voxels with nearly the same T1w intensity have very different T2w intensities (lesions,
    iron-rich deep GM, flow voids): the best 1-D map from T1w to T2w leaves a large residual."""
    mask = quiet0["mask"] > 0
    t1, t2 = quiet0["t1"][mask], quiet0["t2"][mask]
    bins = np.digitize(t1, np.quantile(t1, np.linspace(0, 1, 65)[1:-1]))
    best = np.zeros_like(t2)
    for b in np.unique(bins):
        best[bins == b] = t2[bins == b].mean()  # the optimal 1-D map (conditional mean)
    residual = np.abs(t2 - best)
    lesion = quiet0["fractions"]["lesion"][mask] > 0.9
    assert residual[lesion].mean() > 4 * residual[~lesion].mean()
    # in T2w the flow voids make some deep CSF much darker than other CSF
    csf = quiet0["fractions"]["csf"] > 0.95
    values = quiet0["t2"][csf]
    assert np.percentile(values, 5) < 0.6 * np.percentile(values, 95)
