"""Image-similarity metrics under named protocols.

Papers on MRI contrast translation normalise, mask and average in different ways, so the same
predictions give numbers several dB apart. Every number this benchmark writes therefore names
the *protocol* that produced it, and the common conventions are offered as presets:

``max01``
    2D, per slice. Prediction and target are both divided by the *target* slice's maximum;
    ``data_range = 1``. Reported over the whole slice (``psnr``, ``ssim``, ...) and inside the brain
    mask (``psnr_brain``, ...). Aggregation: per-subject means, then across subjects.
``icon_mean``
    2D, per slice, the convention of the icon-lab SelfRDB code: each slice (prediction and target
    separately) is divided by its own mean, then multiplied by the brain mask (voxels outside set
    to 0), and ``data_range = target.max()``. PSNR/SSIM are taken over the whole (masked) slice.
    Aggregation: per-subject means, then across subjects.
``syndiff``
    2D, per slice, the SynDiff test script: each slice (prediction and target separately) is
    divided by its own maximum, no mask, ``data_range = 1``. Aggregation: mean over all slices.
``volume3d``
    3D, per subject: the stack of a subject's test slices, both divided by the target volume's
    maximum, ``data_range = 1``; 3D SSIM windows. One value per subject (slice recorded as -1).

Metrics (scikit-image, called with the arguments written here):

- ``psnr``: ``peak_signal_noise_ratio(target, pred, data_range=R)``; identical images give
  ``inf`` (the aggregation in :mod:`mrbench.stats` excludes infinite values from means and counts
  them in ``n_infinite``).
- ``ssim``: ``structural_similarity(target, pred, data_range=R)``, the scikit-image default
  (7x7 uniform window, sample covariance), in percent.
- ``ssim_gauss``: Wang et al. 2004, ``structural_similarity(..., gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False)``, in percent. Needs at least 11 voxels along every
  axis; thinner inputs give NaN.
- ``mae``: mean absolute error on the normalised intensities.

Masked variants (suffix ``_brain``) use only voxels inside the mask: PSNR and MAE from the squared
and absolute errors inside the mask, SSIM as the mean of the full SSIM map
(``structural_similarity(..., full=True)``) inside the mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: unit of each metric (the ``_brain`` variants share the unit of their base metric)
UNITS = {"psnr": "dB", "ssim": "%", "ssim_gauss": "%", "mae": "a.u."}
#: True where a larger value is better
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "ssim_gauss": True, "mae": False}
BASE_METRICS = ("psnr", "ssim", "ssim_gauss", "mae")


@dataclass(frozen=True)
class Protocol:
    """How a metric value was computed; written next to every number."""

    name: str
    normalisation: str
    data_range: str
    mask: str  # "region": also _brain variants; "multiply": mask applied to images; "none"
    dims: int
    aggregation: str  # "subject" (per-subject means, then across subjects) or "slice"
    description: str

    def as_dict(self) -> dict[str, str | int]:
        return {
            "protocol": self.name,
            "normalisation": self.normalisation,
            "data_range": self.data_range,
            "mask": self.mask,
            "dims": self.dims,
            "aggregation": self.aggregation,
        }


PROTOCOLS: dict[str, Protocol] = {
    "max01": Protocol(
        "max01",
        "both / target slice max",
        "1",
        "region",
        2,
        "subject",
        "per slice, both images divided by the target slice maximum, data_range 1; "
        "whole slice and inside the brain mask (_brain)",
    ),
    "icon_mean": Protocol(
        "icon_mean",
        "each slice / its own mean",
        "target max",
        "multiply",
        2,
        "subject",
        "per slice, each image divided by its own mean, multiplied by the brain mask, "
        "data_range = target max (SelfRDB convention)",
    ),
    "syndiff": Protocol(
        "syndiff",
        "each slice / its own max",
        "1",
        "none",
        2,
        "slice",
        "per slice, each image divided by its own maximum, no mask, data_range 1, "
        "mean over slices (SynDiff test script)",
    ),
    "volume3d": Protocol(
        "volume3d",
        "both / target volume max",
        "1",
        "region",
        3,
        "subject",
        "per subject volume (stack of test slices), both divided by the target volume maximum, "
        "data_range 1, 3D SSIM windows; whole volume and inside the brain mask (_brain)",
    ),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown metric protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def unit_of(metric: str) -> str:
    return UNITS[metric.removesuffix("_brain")]


def higher_is_better(metric: str) -> bool:
    return HIGHER_IS_BETTER[metric.removesuffix("_brain")]


# ------------------------------------------------------------------ basic metrics
def psnr(target: np.ndarray, pred: np.ndarray, data_range: float) -> float:
    """PSNR in dB; ``inf`` for identical images (no warning, no crash)."""
    err = float(np.mean((target.astype(np.float64) - pred.astype(np.float64)) ** 2))
    if err == 0.0:
        return math.inf
    from skimage.metrics import peak_signal_noise_ratio  # lazily: scipy.stats is slow to import

    return float(peak_signal_noise_ratio(target, pred, data_range=data_range))


def _ssim_kwargs(gauss: bool, shape: tuple[int, ...]) -> dict | None:
    """Arguments for structural_similarity, or None where the window does not fit."""
    if gauss:
        # scikit-image truncates the Gaussian at 3.5 sigma: an 11-voxel window for sigma 1.5
        if min(shape) < 11:
            return None
        return {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    if min(shape) < 7:
        return None
    return {}


def ssim(target: np.ndarray, pred: np.ndarray, data_range: float, *, gauss: bool = False) -> float:
    """SSIM in percent (scikit-image default window, or Wang et al. with ``gauss=True``)."""
    from skimage.metrics import structural_similarity

    kw = _ssim_kwargs(gauss, target.shape)
    if kw is None:
        return math.nan
    value = structural_similarity(
        target.astype(np.float64), pred.astype(np.float64), data_range=data_range, **kw
    )
    return 100.0 * float(value)


def ssim_masked(
    target: np.ndarray, pred: np.ndarray, mask: np.ndarray, data_range: float, *, gauss: bool
) -> float:
    """Mean of the SSIM map inside ``mask``, in percent."""
    from skimage.metrics import structural_similarity

    kw = _ssim_kwargs(gauss, target.shape)
    if kw is None or not mask.any():
        return math.nan
    _, smap = structural_similarity(
        target.astype(np.float64),
        pred.astype(np.float64),
        data_range=data_range,
        full=True,
        **kw,
    )
    return 100.0 * float(smap[mask].mean())


def psnr_masked(target: np.ndarray, pred: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    if not mask.any():
        return math.nan
    err = float(np.mean((target[mask].astype(np.float64) - pred[mask].astype(np.float64)) ** 2))
    if err == 0.0:
        return math.inf
    return float(10.0 * np.log10(data_range**2 / err))


def _all_metrics(
    target: np.ndarray, pred: np.ndarray, data_range: float, mask: np.ndarray | None
) -> dict[str, float]:
    out = {
        "psnr": psnr(target, pred, data_range),
        "ssim": ssim(target, pred, data_range),
        "ssim_gauss": ssim(target, pred, data_range, gauss=True),
        "mae": float(np.mean(np.abs(target.astype(np.float64) - pred.astype(np.float64)))),
    }
    if mask is not None:
        m = mask.astype(bool)
        out["psnr_brain"] = psnr_masked(target, pred, m, data_range)
        out["ssim_brain"] = ssim_masked(target, pred, m, data_range, gauss=False)
        out["ssim_gauss_brain"] = ssim_masked(target, pred, m, data_range, gauss=True)
        diff = np.abs(target[m].astype(np.float64) - pred[m].astype(np.float64))
        out["mae_brain"] = float(diff.mean()) if m.any() else math.nan
    return out


def _safe_div(x: np.ndarray, d: float) -> np.ndarray:
    # an all-zero image stays all zero instead of becoming NaN
    return x / d if d > 0 else np.zeros_like(x)


# ------------------------------------------------------------------- protocols
def compute(
    protocol: str, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, float]:
    """All metrics of one image pair under ``protocol``.

    ``pred`` and ``target`` are 2D slices for the 2D protocols, 3D volumes (or slice stacks) for
    ``volume3d``; intensities as stored (``[0, 1]``). Returns ``{metric: value}``.
    """
    proto = get_protocol(protocol)
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    if pred.ndim != proto.dims:
        raise ValueError(f"protocol {protocol!r} expects {proto.dims}D images, got {pred.ndim}D")
    if mask is not None:
        mask = np.asarray(mask) > 0
        if mask.shape != target.shape:
            raise ValueError(f"mask shape {mask.shape} differs from target shape {target.shape}")
    if protocol in ("max01", "volume3d"):
        scale = float(target.max())
        return _all_metrics(_safe_div(target, scale), _safe_div(pred, scale), 1.0, mask)
    if protocol == "icon_mean":
        t = _safe_div(target, float(target.mean()))
        p = _safe_div(pred, float(pred.mean()))
        if mask is not None:
            t, p = t * mask, p * mask
        data_range = float(t.max())
        if data_range <= 0:
            return {k: math.nan for k in BASE_METRICS}
        return _all_metrics(t, p, data_range, None)
    if protocol == "syndiff":
        t = _safe_div(target, float(target.max()))
        p = _safe_div(pred, float(pred.max()))
        return _all_metrics(t, p, 1.0, None)
    raise AssertionError(protocol)  # pragma: no cover


def compute_volume(
    protocol: str, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None
) -> list[tuple[int, str, float]]:
    """Metrics of a volume whose last axis holds the axial slices.

    2D protocols evaluate every slice where the target is not empty; ``volume3d`` evaluates the
    volume once (slice = -1). Returns ``(slice, metric, value)`` rows.
    """
    proto = get_protocol(protocol)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    if proto.dims == 3:
        return [(-1, k, v) for k, v in compute(protocol, pred, target, mask).items()]
    rows = []
    for z in range(target.shape[-1]):
        if not np.any(target[..., z]):
            continue
        m = None if mask is None else mask[..., z]
        rows += [(z, k, v) for k, v in compute(protocol, pred[..., z], target[..., z], m).items()]
    return rows
