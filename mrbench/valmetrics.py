"""PSNR and SSIM for the trainer's validation (model selection and the plateau schedule).

Images are 2D arrays on the slice store's scale, [0, 1], so ``data_range=1`` is passed explicitly
(scikit-image cannot infer it reliably for float images). SSIM uses scikit-image's default window
(7x7 uniform, sample covariance), the ``ssim`` of :mod:`mrbench.metrics`, but is returned as a
fraction in [0, 1] rather than in percent. Identical images would give an infinite PSNR; it is
capped at :data:`PSNR_CAP` so that a mean over slices stays finite.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

PSNR_CAP = 100.0


def psnr(target: np.ndarray, pred: np.ndarray) -> float:
    """PSNR in dB of ``pred`` against ``target``, both in [0, 1] (``data_range=1``)."""
    target = np.asarray(target, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if float(np.mean((target - pred) ** 2)) == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, float(peak_signal_noise_ratio(target, pred, data_range=1.0)))


def ssim(target: np.ndarray, pred: np.ndarray) -> float:
    """SSIM (fraction) of ``pred`` against ``target``, both in [0, 1] (``data_range=1``)."""
    return float(
        structural_similarity(
            np.asarray(target, dtype=np.float64), np.asarray(pred, dtype=np.float64), data_range=1.0
        )
    )


def psnr_batch(target: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """:func:`psnr` of every item of (N, H, W) batches in one vectorised pass."""
    from mrbench.metrics import psnr_batch as _psnr

    t = np.asarray(target, dtype=np.float64)
    return np.minimum(PSNR_CAP, _psnr(t, np.asarray(pred, dtype=np.float64), 1.0))


def ssim_batch(target: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """:func:`ssim` of every item of (N, H, W) batches in one vectorised pass."""
    from mrbench.metrics import _crop_mean, ssim_map_batch

    t = np.asarray(target, dtype=np.float64)
    smap = ssim_map_batch(t, np.asarray(pred, dtype=np.float64), 1.0, gauss=False)
    if smap is None:
        raise ValueError(f"ssim: images of {t.shape[1:]} px are smaller than the 7x7 window")
    return _crop_mean(smap, False)
