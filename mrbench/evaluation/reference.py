"""Every metric protocol written out slice by slice with scikit-image: the specification.

:mod:`mrbench.evaluation.metrics` computes the same numbers for whole batches (a compiled kernel,
or numpy array operations); the tests compare both with this module on random inputs, and
``benchmarks/metrics_throughput.py`` times it as the per-slice baseline. It is slow by design
(one ``structural_similarity`` call per metric and slice) and follows the protocol definitions
in :mod:`mrbench.evaluation.metrics` literally. scikit-image has no MS-SSIM: that value comes
from the scipy version in :mod:`mrbench.evaluation.msssim`, which the tests hold to
pytorch-msssim.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

from mrbench.evaluation.msssim import msssim_batch_numpy
from mrbench.evaluation.protocols import BASE_METRICS, PROTOCOLS
from mrbench.evaluation.regions import clip_scale, region_masks

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


def _normalised(
    protocol: str, t: np.ndarray, p: np.ndarray, m: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, float]:
    if protocol in ("max01", "volume3d"):
        scale = float(t.max())
        return _divide(t, scale), _divide(p, scale), 1.0
    if protocol == "brasyn":
        return clip_scale(t[None])[0], clip_scale(p[None])[0], 1.0
    if protocol == "icon_mean":
        tn, pn = _divide(t, float(t.mean())), _divide(p, float(p.mean()))
        if m is not None:
            tn, pn = tn * m, pn * m
        return tn, pn, float(tn.max())
    if protocol == "syndiff":
        return _divide(t, float(t.max())), _divide(p, float(p.max())), 1.0
    raise ValueError(f"unknown metric protocol {protocol!r}")


def compute(
    protocol: str,
    pred: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, float]:
    """The metrics of one image pair (a slice, or a volume for the 3D protocols) under
    ``protocol``: the protocol's metrics, MS-SSIM, then (with ``labels``, in the protocols with
    regions) each region's values, NaN where the region is empty."""
    t = np.asarray(target, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    m = None if mask is None else np.asarray(mask) > 0
    tn, pn, data_range = _normalised(protocol, t, p, m)
    region = PROTOCOLS[protocol].mask == "region"
    if not data_range > 0:  # icon_mean of an empty slice
        return dict.fromkeys(("psnr", "ssim", "ssim_gauss", "mae", "msssim"), math.nan)
    out = _pair_metrics(tn, pn, data_range, m if region else None)
    out["msssim"] = 100 * float(msssim_batch_numpy(tn[None], pn[None], data_range)[0])
    if labels is None or not region:
        return out
    for name, rmask in region_masks(None if m is None else m[None], labels[None]).items():
        inside = _pair_metrics(tn, pn, data_range, rmask[0])
        for base in BASE_METRICS:
            out[f"{base}_{name}"] = inside[f"{base}_brain"]
    return out


def compute_batch(
    protocol: str,
    pred: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """:func:`compute` of every item of a batch, one scikit-image call per metric and item."""
    rows = [
        compute(
            protocol,
            pred[i],
            target[i],
            None if mask is None else mask[i],
            None if labels is None else labels[i],
        )
        for i in range(len(target))
    ]
    return {k: np.array([r[k] for r in rows]) for k in rows[0]} if rows else {}
