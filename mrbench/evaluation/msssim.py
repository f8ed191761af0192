"""Multi-scale SSIM (Wang, Simoncelli and Bovik 2003) of batches of 2D slices or 3D volumes.

The definition is the one of the reference implementations (pytorch-msssim, torchmetrics):
an 11-tap Gaussian window (sigma 1.5) applied without padding ("valid"), constants
``K1 = 0.01``, ``K2 = 0.03``, population covariances; at every scale but the coarsest the mean
contrast-structure term ``cs = (2 vxy + C2) / (vx + vy + C2)``, at the coarsest the mean SSIM,
each clipped at 0 and raised to its weight (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), the
product of the five; between scales a 2x average pooling (an odd side gets a zero prepended,
which is averaged in, as pytorch-msssim's ``avg_pool`` with ``padding=1`` does).

Five scales need at least 176 voxels along every axis (11 at the coarsest scale). Smaller
inputs use as many scales as fit (the coarsest still at least 11 voxels along every axis) with
the first weights renormalised to sum to 1; inputs under 11 voxels along an axis give NaN.

Each scale is one call of the compiled kernel (:mod:`mrbench.evaluation.kernel`, the Gaussian
SSIM map cropped to its valid region plus its contrast-structure sum), or scipy's filters where
the kernel is unavailable; :func:`msssim_batch_numpy` is also the per-item specification that
:mod:`mrbench.evaluation.reference` uses.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from mrbench.evaluation import kernel as metrics_kernel

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN, SIGMA = 11, 1.5
_K1, _K2 = 0.01, 0.03


@functools.cache
def gauss_taps() -> np.ndarray:
    """The 11 taps of the Gaussian window (sigma 1.5), normalised to sum 1."""
    x = np.arange(WIN, dtype=np.float64) - WIN // 2
    g = np.exp(-(x**2) / (2 * SIGMA**2))
    return g / g.sum()


def n_scales(spatial: tuple[int, ...]) -> int:
    """Scales that fit: the coarsest keeps at least :data:`WIN` voxels along every axis."""
    sizes, n = list(spatial), 0
    while n < len(WEIGHTS) and min(sizes) >= WIN:
        n += 1
        sizes = [s // 2 + s % 2 for s in sizes]
    return n


def weights(n: int) -> np.ndarray:
    """The first ``n`` standard weights, renormalised to sum 1 (the standard five for n = 5)."""
    w = np.asarray(WEIGHTS[:n], dtype=np.float64)
    return w if n == len(WEIGHTS) else w / w.sum()


def downsample(x: np.ndarray) -> np.ndarray:
    """2x average pooling of every spatial axis of an (N, *spatial) batch; an odd axis gets a
    zero prepended first (pytorch's ``avg_pool`` with ``padding=1``, zeros counted)."""
    for ax in range(1, x.ndim):
        if x.shape[ax] % 2:
            pad = [(0, 0)] * x.ndim
            pad[ax] = (1, 0)
            x = np.pad(x, pad)
        even = (slice(None),) * ax + (slice(0, None, 2),)
        odd = (slice(None),) * ax + (slice(1, None, 2),)
        x = 0.5 * (x[even] + x[odd])
    return x


def _scale_terms_numpy(
    x: np.ndarray, y: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean SSIM and mean contrast-structure of every item over the valid window positions."""
    from scipy import ndimage

    taps = gauss_taps()
    f = np.stack([x, y, x * x, y * y, x * y])  # (5, N, *spatial)
    for ax in range(2, f.ndim):
        f = ndimage.correlate1d(f, taps, axis=ax, mode="reflect")
    pad = WIN // 2
    f = f[(slice(None), slice(None)) + (slice(pad, -pad),) * (x.ndim - 1)]
    ux, uy, uxx, uyy, uxy = f
    rr = r.reshape(-1, *([1] * (x.ndim - 1)))
    c1, c2 = (_K1 * rr) ** 2, (_K2 * rr) ** 2
    cs = (2 * (uxy - ux * uy) + c2) / ((uxx - ux * ux) + (uyy - uy * uy) + c2)
    ssim = (2 * ux * uy + c1) / (ux * ux + uy * uy + c1) * cs
    axes = tuple(range(1, x.ndim))
    return ssim.mean(axis=axes), cs.mean(axis=axes)


def _scale_terms_kernel(
    x: np.ndarray, y: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    s = metrics_kernel.run(
        x,
        y,
        None,
        dims3=x.ndim == 4,
        st=np.ones(n),
        sp=np.ones(n),
        mask_mode=0,
        data_range=r,
        uniform=None,
        gauss=gauss_taps(),
        cs=True,
    )
    n_valid = math.prod(d - (WIN - 1) for d in x.shape[1:])
    return s["crop_gauss"] / n_valid, s["crop_cs"] / n_valid


def msssim_batch(
    target: np.ndarray, pred: np.ndarray, data_range: np.ndarray | float, *, kernel: bool = True
) -> np.ndarray:
    """MS-SSIM (a fraction) of every item of (N, H, W) or (N, A, B, C) batches of normalised
    images; NaN where not one scale fits. ``kernel=False`` forces the scipy version."""
    x = np.asarray(target, dtype=np.float64)
    y = np.asarray(pred, dtype=np.float64)
    n = x.shape[0]
    r = np.broadcast_to(np.asarray(data_range, dtype=np.float64), (n,)).copy()
    levels = n_scales(x.shape[1:])
    if levels == 0 or n == 0:
        return np.full(n, math.nan)
    terms = _scale_terms_kernel if kernel and metrics_kernel.load() else _scale_terms_numpy
    w = weights(levels)
    out = np.ones(n)
    for level in range(levels):
        ssim, cs = terms(np.ascontiguousarray(x), np.ascontiguousarray(y), r)
        term = ssim if level == levels - 1 else cs
        out *= np.maximum(term, 0.0) ** w[level]
        if level < levels - 1:
            x, y = downsample(x), downsample(y)
    return out


def msssim_batch_numpy(
    target: np.ndarray, pred: np.ndarray, data_range: np.ndarray | float
) -> np.ndarray:
    """:func:`msssim_batch` with scipy's filters (the specification the kernel path is held to)."""
    return msssim_batch(target, pred, data_range, kernel=False)
