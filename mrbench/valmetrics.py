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
