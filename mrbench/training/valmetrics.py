"""PSNR and SSIM for the trainer's validation (model selection and the plateau schedule).

Images are 2D arrays on the slice store's scale, [0, 1], so ``data_range=1`` is passed explicitly
(scikit-image cannot infer it reliably for float images). SSIM uses scikit-image's default window
(7x7 uniform, sample covariance), the ``ssim`` of :mod:`mrbench.evaluation.metrics`, but is
returned as a
fraction in [0, 1] rather than in percent. Identical images would give an infinite PSNR; it is
capped at :data:`PSNR_CAP` so that a mean over slices stays finite. A prediction holding NaN or
inf gets NaN for both metrics, never a score: the cap must not turn a diverged model into the
best one (``min(100, nan)`` is 100), and the trainer stops on a non-finite validation.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

PSNR_CAP = 100.0


def psnr(target: np.ndarray, pred: np.ndarray) -> float:
    """PSNR in dB of ``pred`` against ``target``, both in [0, 1] (``data_range=1``)."""
    target = np.asarray(target, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if not np.isfinite(pred).all():
        return float("nan")
    if float(np.mean((target - pred) ** 2)) == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, float(peak_signal_noise_ratio(target, pred, data_range=1.0)))


def ssim(target: np.ndarray, pred: np.ndarray) -> float:
    """SSIM (fraction) of ``pred`` against ``target``, both in [0, 1] (``data_range=1``)."""
    if not np.isfinite(np.asarray(pred)).all():
        return float("nan")
    return float(
        structural_similarity(
            np.asarray(target, dtype=np.float64), np.asarray(pred, dtype=np.float64), data_range=1.0
        )
    )


def psnr_batch(target: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """:func:`psnr` of every item of (N, H, W) batches in one vectorised pass (NaN for a
    prediction holding NaN or inf: its mean squared error is NaN or inf)."""
    from mrbench.evaluation.metrics import psnr_ssim_batch

    values = psnr_ssim_batch(target, pred, 1.0, ssim=False)[0]
    return np.where(np.isnan(values) | np.isneginf(values), np.nan, np.minimum(PSNR_CAP, values))


def ssim_batch(target: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """:func:`ssim` of every item of (N, H, W) batches in one vectorised pass (NaN or inf in a
    prediction makes its SSIM map, hence its SSIM, NaN)."""
    from mrbench.evaluation.metrics import psnr_ssim_batch

    values = psnr_ssim_batch(target, pred, 1.0)[1]
    if values is None:
        shape = np.shape(target)[1:]
        raise ValueError(f"ssim: images of {shape} px are smaller than the 7x7 window")
    return values
