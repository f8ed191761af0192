"""Every metric protocol written out slice by slice with scikit-image: the specification.

:mod:`mrbench.evaluation.metrics` computes the same numbers for whole batches (a compiled kernel,
or numpy array operations); the tests compare both with this module on random inputs, and
``benchmarks/metrics_throughput.py`` times it as the per-slice baseline. It is slow by design
(one ``structural_similarity`` call per metric and slice) and follows the protocol definitions
in :mod:`mrbench.evaluation.metrics` literally.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

GAUSS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


def _psnr(mse: float, data_range: float) -> float:
    # scikit-image's peak_signal_noise_ratio, without its divide-by-zero warning
    if math.isnan(mse):
        return math.nan
    return math.inf if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def _ssim(t: np.ndarray, p: np.ndarray, data_range: float, gauss: bool, full: bool = False):
    try:
        return structural_similarity(
            t, p, data_range=data_range, full=full, **(GAUSS if gauss else {})
        )
    except ValueError:  # the window does not fit the image
        return (math.nan, None) if full else math.nan


def _divide(x: np.ndarray, d: float) -> np.ndarray:
    return x / d if d > 0 else np.zeros_like(x)


def _pair_metrics(
    t: np.ndarray, p: np.ndarray, data_range: float, mask: np.ndarray | None
) -> dict[str, float]:
    out = {
        "psnr": _psnr(float(np.mean((t - p) ** 2)), data_range),
        "ssim": 100 * _ssim(t, p, data_range, False),
        "ssim_gauss": 100 * _ssim(t, p, data_range, True),
        "mae": float(np.mean(np.abs(t - p))),
    }
    if mask is not None:
        inside = mask.any()
        out["psnr_brain"] = (
            _psnr(float(np.mean((t[mask] - p[mask]) ** 2)), data_range) if inside else math.nan
        )
        for key, gauss in (("ssim_brain", False), ("ssim_gauss_brain", True)):
            _, smap = _ssim(t, p, data_range, gauss, full=True)
            out[key] = 100 * float(smap[mask].mean()) if inside and smap is not None else math.nan
        out["mae_brain"] = float(np.mean(np.abs(t[mask] - p[mask]))) if inside else math.nan
    return out


def compute(
    protocol: str, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, float]:
    """The metrics of one image pair (a slice, or a volume for ``volume3d``) under ``protocol``."""
    t = np.asarray(target, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    m = None if mask is None else np.asarray(mask) > 0
    if protocol in ("max01", "volume3d"):
        scale = float(t.max())
        return _pair_metrics(_divide(t, scale), _divide(p, scale), 1.0, m)
    if protocol == "icon_mean":
        tn, pn = _divide(t, float(t.mean())), _divide(p, float(p.mean()))
        if m is not None:
            tn, pn = tn * m, pn * m
        data_range = float(tn.max())
        if not data_range > 0:
            return dict.fromkeys(("psnr", "ssim", "ssim_gauss", "mae"), math.nan)
        return _pair_metrics(tn, pn, data_range, None)
    if protocol == "syndiff":
        return _pair_metrics(_divide(t, float(t.max())), _divide(p, float(p.max())), 1.0, None)
    raise ValueError(f"unknown metric protocol {protocol!r}")


def compute_batch(
    protocol: str, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """:func:`compute` of every item of a batch, one scikit-image call per metric and item."""
    rows = [
        compute(protocol, pred[i], target[i], None if mask is None else mask[i])
        for i in range(len(target))
    ]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]} if rows else {}
