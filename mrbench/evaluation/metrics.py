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
``brasyn``
    3D, per subject, the BraSyn challenge: prediction and target volume each clipped to its own
    0.5th/99.5th percentiles and scaled to [0, 1] (:func:`mrbench.evaluation.regions.clip_scale`),
    ``data_range = 1``. One value per subject.

The protocols with regions (``mask = "region"``) also report each metric inside the brain mask
(``_brain``) and, given tissue labels, inside the lesion and the healthy tissue (``_lesion``,
``_healthy``; :mod:`mrbench.evaluation.regions`). Every protocol reports ``msssim``, the
multi-scale SSIM of :mod:`mrbench.evaluation.msssim` in percent, on its normalised images.

Metrics (scikit-image, called with the arguments written here):

- ``psnr``: ``peak_signal_noise_ratio(target, pred, data_range=R)``; identical images give
  ``inf`` (the aggregation in :mod:`mrbench.evaluation.stats` excludes infinite values from means
  and counts them in ``n_infinite``).
- ``ssim``: ``structural_similarity(target, pred, data_range=R)``, the scikit-image default
  (7x7 uniform window, sample covariance), in percent.
- ``ssim_gauss``: Wang et al. 2004, ``structural_similarity(..., gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False)``, in percent. Needs at least 11 voxels along every
  axis; thinner inputs give NaN.
- ``mae``: mean absolute error on the normalised intensities.

Masked variants (suffix ``_brain``) use only voxels inside the mask: PSNR and MAE from the squared
and absolute errors inside the mask, SSIM as the mean of the full SSIM map
(``structural_similarity(..., full=True)``) inside the mask.

Batches are computed by the compiled kernel of :mod:`mrbench.evaluation.kernel` (the same float64
arithmetic, fused row by row), or by the numpy version here where no C compiler is available;
:mod:`mrbench.evaluation.reference` spells every protocol out with scikit-image slice by slice, and
the tests hold both batched paths to it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from mrbench.evaluation import kernel as metrics_kernel
from mrbench.evaluation import msssim, regions
from mrbench.evaluation.protocols import (  # noqa: F401 - re-exported
    BASE_METRICS,
    HIGHER_IS_BETTER,
    PROTOCOLS,
    REGION_SUFFIXES,
    UNITS,
    Protocol,
    base_metric,
    get_protocol,
    higher_is_better,
    unit_of,
)

# ------------------------------------------------------------------ basic metrics
# Every metric is computed on a *batch*: arrays of shape (N, *spatial) with one value per item.
# The numpy version below (the fallback of the compiled kernel) costs a few array operations per
# batch instead of a Python loop of scikit-image calls. The formulas are scikit-image's, step by
# step (tests compare them on random inputs to 1e-6).

#: SSIM constants and windows of scikit-image's ``structural_similarity``
_K1, _K2 = 0.01, 0.03
_GAUSS_SIGMA, _GAUSS_TRUNCATE = 1.5, 3.5
_GAUSS_WIN = 2 * int(_GAUSS_TRUNCATE * _GAUSS_SIGMA + 0.5) + 1  # 11
_UNIFORM_WIN = 7


def _spatial_axes(x: np.ndarray) -> tuple[int, ...]:
    return tuple(range(1, x.ndim))


def _per_item(v: np.ndarray | float, like: np.ndarray) -> np.ndarray:
    """A scalar or (N,) array reshaped to broadcast over (N, *spatial)."""
    return np.asarray(v, dtype=np.float64).reshape(-1, *([1] * (like.ndim - 1)))


def psnr(target: np.ndarray, pred: np.ndarray, data_range: float) -> float:
    """PSNR in dB; ``inf`` for identical images (no warning, no crash)."""
    t = np.asarray(target, dtype=np.float64)[None]
    return float(psnr_batch(t, np.asarray(pred, dtype=np.float64)[None], data_range)[0])


def psnr_batch(target: np.ndarray, pred: np.ndarray, data_range: np.ndarray | float) -> np.ndarray:
    """PSNR in dB of every item of (N, *spatial) batches; ``inf`` where the images are equal."""
    err = np.mean((target - pred) ** 2, axis=_spatial_axes(target), dtype=np.float64)
    return _psnr_from_mse(err, data_range)


def _psnr_from_mse(err: np.ndarray, data_range: np.ndarray | float) -> np.ndarray:
    """``10 log10(R^2 / mse)``; ``inf`` where the mean squared error is 0, NaN where it is NaN
    (a prediction holding NaN must not score as a perfect one)."""
    r2 = np.broadcast_to(np.asarray(data_range, dtype=np.float64) ** 2, err.shape)
    out = np.where(np.isnan(err), math.nan, math.inf)
    nz = err > 0
    with np.errstate(divide="ignore"):  # an infinite error gives -inf dB
        out[nz] = 10.0 * np.log10(r2[nz] / err[nz])
    return out


def _ssim_kwargs(gauss: bool, shape: tuple[int, ...]) -> dict | None:
    """Arguments for structural_similarity, or None where the window does not fit."""
    if gauss:
        # scikit-image truncates the Gaussian at 3.5 sigma: an 11-voxel window for sigma 1.5
        if min(shape) < _GAUSS_WIN:
            return None
        return {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
    if min(shape) < _UNIFORM_WIN:
        return None
    return {}


def ssim_map_batch(
    target: np.ndarray, pred: np.ndarray, data_range: np.ndarray | float, *, gauss: bool
) -> np.ndarray | None:
    """scikit-image's full SSIM map for every item of (N, *spatial) batches (None: the window
    does not fit). The five local moments of all items are filtered in one scipy call."""
    from scipy import ndimage

    spatial = target.shape[1:]
    if _ssim_kwargs(gauss, spatial) is None:
        return None
    x, y = target, pred
    moments = np.stack([x, y, x * x, y * y, x * y])  # (5, N, *spatial)
    if gauss:
        sigma = (0, 0) + (_GAUSS_SIGMA,) * len(spatial)
        f = ndimage.gaussian_filter(moments, sigma, mode="reflect", truncate=_GAUSS_TRUNCATE)
        cov_norm = 1.0
    else:
        f = ndimage.uniform_filter(moments, (1, 1) + (_UNIFORM_WIN,) * len(spatial))
        n_win = _UNIFORM_WIN ** len(spatial)
        cov_norm = n_win / (n_win - 1)
    ux, uy, uxx, uyy, uxy = f
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    r = _per_item(data_range, x)
    c1, c2 = (_K1 * r) ** 2, (_K2 * r) ** 2
    a1, a2 = 2 * ux * uy + c1, 2 * vxy + c2
    b1, b2 = ux**2 + uy**2 + c1, vx + vy + c2
    return (a1 * a2) / (b1 * b2)


def _crop_mean(smap: np.ndarray, gauss: bool) -> np.ndarray:
    pad = ((_GAUSS_WIN if gauss else _UNIFORM_WIN) - 1) // 2
    inner = (slice(None),) + (slice(pad, -pad),) * (smap.ndim - 1)
    return smap[inner].mean(axis=_spatial_axes(smap), dtype=np.float64)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of ``values`` inside ``mask`` per item; NaN where the mask is empty."""
    axes = _spatial_axes(values)
    n = mask.sum(axis=axes)
    total = np.where(mask, values, 0.0).sum(axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), math.nan)


def ssim(target: np.ndarray, pred: np.ndarray, data_range: float, *, gauss: bool = False) -> float:
    """SSIM in percent (scikit-image default window, or Wang et al. with ``gauss=True``)."""
    t = np.asarray(target, dtype=np.float64)[None]
    smap = ssim_map_batch(t, np.asarray(pred, dtype=np.float64)[None], data_range, gauss=gauss)
    return math.nan if smap is None else 100.0 * float(_crop_mean(smap, gauss)[0])


def ssim_masked(
    target: np.ndarray, pred: np.ndarray, mask: np.ndarray, data_range: float, *, gauss: bool
) -> float:
    """Mean of the SSIM map inside ``mask``, in percent."""
    t = np.asarray(target, dtype=np.float64)[None]
    smap = ssim_map_batch(t, np.asarray(pred, dtype=np.float64)[None], data_range, gauss=gauss)
    if smap is None or not np.any(mask):
        return math.nan
    return 100.0 * float(_masked_mean(smap, np.asarray(mask, dtype=bool)[None])[0])


def psnr_masked(target: np.ndarray, pred: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    if not mask.any():
        return math.nan
    err = float(np.mean((target[mask].astype(np.float64) - pred[mask].astype(np.float64)) ** 2))
    if err == 0.0:
        return math.inf
    return float(10.0 * np.log10(data_range**2 / err))


def _all_metrics_batch(
    target: np.ndarray, pred: np.ndarray, data_range: np.ndarray | float, mask: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Every metric of (N, *spatial) batches; each SSIM map is computed once and serves both
    the whole-image and the in-mask mean."""
    n = target.shape[0]
    nan = np.full(n, math.nan)
    maps = {g: ssim_map_batch(target, pred, data_range, gauss=g) for g in (False, True)}
    absdiff = np.abs(target - pred)
    out = {
        "psnr": psnr_batch(target, pred, data_range),
        "ssim": nan if maps[False] is None else 100.0 * _crop_mean(maps[False], False),
        "ssim_gauss": nan if maps[True] is None else 100.0 * _crop_mean(maps[True], True),
        "mae": absdiff.mean(axis=_spatial_axes(target), dtype=np.float64),
    }
    if mask is not None:
        m = mask.astype(bool)
        sq = _masked_mean((target - pred) ** 2, m)
        r2 = np.broadcast_to(np.asarray(data_range, dtype=np.float64) ** 2, sq.shape)
        with np.errstate(divide="ignore"):
            psnr_b = np.where(sq > 0, 10.0 * np.log10(r2 / np.where(sq > 0, sq, 1.0)), math.inf)
        out["psnr_brain"] = np.where(np.isnan(sq), math.nan, psnr_b)
        for key, g in (("ssim_brain", False), ("ssim_gauss_brain", True)):
            out[key] = nan if maps[g] is None else 100.0 * _masked_mean(maps[g], m)
        out["mae_brain"] = _masked_mean(absdiff, m)
    return out


def _all_metrics(
    target: np.ndarray, pred: np.ndarray, data_range: float, mask: np.ndarray | None
) -> dict[str, float]:
    res = _all_metrics_batch(
        target[None], pred[None], data_range, None if mask is None else mask[None]
    )
    return {k: float(v[0]) for k, v in res.items()}


def _safe_div(x: np.ndarray, d: np.ndarray | float) -> np.ndarray:
    """``x / d`` per item; an item whose divisor is <= 0 stays all zero instead of NaN."""
    d = _per_item(d, x)
    return np.where(d > 0, x / np.where(d > 0, d, 1.0), 0.0)


def _reduce(x: np.ndarray, how: str) -> np.ndarray:
    axes = _spatial_axes(x)
    return x.max(axis=axes) if how == "max" else x.mean(axis=axes, dtype=np.float64)


# ------------------------------------------------------------------- protocols
def _check_batch(
    protocol: str, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    proto = get_protocol(protocol)
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    if pred.ndim != proto.dims + 1:
        raise ValueError(
            f"protocol {protocol!r} expects a batch of {proto.dims}D images, "
            f"got a {pred.ndim}D array"
        )
    if mask is not None:
        mask = np.asarray(mask)
        mask = mask if mask.dtype == np.bool_ else mask > 0
        if mask.shape != target.shape:
            raise ValueError(f"mask shape {mask.shape} differs from target shape {target.shape}")
    return pred, target, mask


def compute_batch(
    protocol: str,
    pred: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """All metrics of a batch of image pairs under ``protocol``, one value per item.

    ``pred``/``target``/``mask``/``labels`` have shape (N, H, W) for the 2D protocols (N slices)
    and (N, H, W, D) for the 3D ones (N volumes); intensities as stored (``[0, 1]``). Item ``i``
    gets exactly what :func:`compute` gives for ``pred[i]``, ``target[i]``, ``mask[i]``.
    ``labels`` (tissue classes) add the ``_lesion`` and ``_healthy`` values of the protocols
    with regions (:mod:`mrbench.evaluation.regions`; NaN for an item without that region).
    Computed by the compiled kernel (:mod:`mrbench.evaluation.kernel`) where it is available,
    else by :func:`compute_batch_numpy`; both follow scikit-image to 1e-6.
    """
    return _compute_all(protocol, pred, target, mask, labels, metrics_kernel.load() is not None)


def compute_batch_numpy(
    protocol: str,
    pred: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """:func:`compute_batch` in numpy/scipy array operations (the fallback without a C
    compiler, and the reference the kernel is tested against besides scikit-image)."""
    return _compute_all(protocol, pred, target, mask, labels, False)


def _compute_all(
    protocol: str,
    pred: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None,
    labels: np.ndarray | None,
    kernel: bool,
) -> dict[str, np.ndarray]:
    """The protocol's metrics, then MS-SSIM, then the region metrics (the reference's order)."""
    pred, target, mask = _check_batch(protocol, pred, target, mask)
    if labels is not None and np.shape(labels) != target.shape:
        raise ValueError(f"label shape {np.shape(labels)} differs from target shape {target.shape}")
    if protocol == "brasyn":
        pred, target = regions.clip_scale(pred), regions.clip_scale(target)
    fn = _compute_batch_kernel if kernel else _compute_batch_numpy
    out = fn(protocol, pred, target, mask)
    t, p, r = _normalised(protocol, pred, target, mask)
    ok = r > 0
    ms = msssim.msssim_batch(t, p, np.where(ok, r, 1.0), kernel=kernel)
    out["msssim"] = np.where(ok, 100.0 * ms, math.nan)
    if labels is None or get_protocol(protocol).mask != "region":
        return out
    n = target.shape[0]
    for name, region in regions.region_masks(mask, labels).items():
        has = regions.present(region)
        vals = {f"{b}_{name}": np.full(n, math.nan) for b in BASE_METRICS}
        if has.any():
            res = fn(protocol, pred[has], target[has], region[has])
            for b in BASE_METRICS:
                vals[f"{b}_{name}"][has] = res[f"{b}_brain"]
        out.update(vals)
    return out


def _normalised(
    protocol: str, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Target, prediction (float64) and per-item data range as the protocol normalises them
    (``brasyn``: already clipped and scaled)."""
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    ones = np.ones(target.shape[0])
    if protocol in ("max01", "volume3d"):
        scale = _reduce(target, "max")
        return _safe_div(target, scale), _safe_div(pred, scale), ones
    if protocol == "brasyn":
        return target, pred, ones
    if protocol == "icon_mean":
        t = _safe_div(target, _reduce(target, "mean"))
        p = _safe_div(pred, _reduce(pred, "mean"))
        if mask is not None:
            t, p = t * mask, p * mask
        return t, p, _reduce(t, "max")
    if protocol == "syndiff":
        return (
            _safe_div(target, _reduce(target, "max")),
            _safe_div(pred, _reduce(pred, "max")),
            ones,
        )
    raise AssertionError(protocol)  # pragma: no cover


def _compute_batch_numpy(
    protocol: str, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None
) -> dict[str, np.ndarray]:
    t, p, data_range = _normalised(protocol, pred, target, mask)
    if protocol != "icon_mean":
        region = mask if get_protocol(protocol).mask == "region" else None
        return _all_metrics_batch(t, p, data_range, region)
    ok = data_range > 0
    res = _all_metrics_batch(t, p, np.where(ok, data_range, 1.0), None)
    return {k: np.where(ok, v, math.nan) for k, v in res.items()}


@functools.cache
def _gauss_taps() -> np.ndarray:
    """scipy.ndimage's Gaussian kernel for sigma 1.5 truncated at 3.5 sigma (11 taps)."""
    radius = _GAUSS_WIN // 2
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (_GAUSS_SIGMA * _GAUSS_SIGMA) * x**2)
    return phi / phi.sum()


def _kernel_windows(
    spatial: tuple[int, ...], uniform: bool = True, gauss: bool = True
) -> tuple[tuple[np.ndarray, float] | None, np.ndarray | None]:
    """The kernel's windows (None where the window does not fit, as in :func:`_ssim_kwargs`)."""
    n_win = _UNIFORM_WIN ** len(spatial)
    u = (np.full(_UNIFORM_WIN, 1.0 / _UNIFORM_WIN), n_win / (n_win - 1))
    return (
        u if uniform and _ssim_kwargs(False, spatial) is not None else None,
        _gauss_taps() if gauss and _ssim_kwargs(True, spatial) is not None else None,
    )


def _n_crop(spatial: tuple[int, ...], win: int) -> int:
    """Voxels that scikit-image averages its SSIM map over: the border of ``(win - 1) // 2``
    cropped on every side (the kernel returns the sum over them)."""
    pad = (win - 1) // 2
    return math.prod(d - 2 * pad for d in spatial)


def _contiguous_axes(*arrays: np.ndarray | None) -> list[np.ndarray | None]:
    """The arrays with their spatial axes ordered by the first one's memory layout.

    Every metric here is symmetric in the spatial axes (the same window, border and crop on
    each), so a (N, H, W, D) stack made by ``np.moveaxis`` of a (D, H, W) array is scored in
    its own layout without a transposed copy."""
    ref = arrays[0]
    assert ref is not None
    order = sorted(range(1, ref.ndim), key=lambda ax: -ref.strides[ax])
    return [None if a is None else a.transpose(0, *order) for a in arrays]


def _compute_batch_kernel(
    protocol: str, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None
) -> dict[str, np.ndarray]:
    if target.dtype not in (np.float32, np.float64) or pred.dtype != target.dtype:
        pred, target = pred.astype(np.float64), target.astype(np.float64)
    if target.ndim == 4:
        target, pred, mask = _contiguous_axes(target, pred, mask)
    n, spatial = target.shape[0], target.shape[1:]
    axes = _spatial_axes(target)
    data_range: np.ndarray | None = np.ones(n)
    mask_mode = 0
    if protocol in ("max01", "volume3d"):
        st = sp = target.max(axis=axes).astype(np.float64)
        mask_mode = 0 if mask is None else 1
    elif protocol == "brasyn":  # clipped and scaled to [0, 1] already
        st = sp = np.ones(n)
        mask_mode = 0 if mask is None else 1
    elif protocol == "icon_mean":
        st = target.mean(axis=axes, dtype=np.float64)
        sp = pred.mean(axis=axes, dtype=np.float64)
        mask_mode, data_range = (0 if mask is None else 2), None
    elif protocol == "syndiff":
        st = target.max(axis=axes).astype(np.float64)
        sp = pred.max(axis=axes).astype(np.float64)
        mask = None
    else:  # pragma: no cover
        raise AssertionError(protocol)
    uniform, gauss = _kernel_windows(spatial)
    s = metrics_kernel.run(
        target,
        pred,
        mask if mask_mode else None,
        dims3=target.ndim == 4,
        st=st,
        sp=sp,
        mask_mode=mask_mode,
        data_range=data_range,
        uniform=uniform,
        gauss=gauss,
    )
    r = s["max_x"] if data_range is None else data_range
    n_vox = math.prod(spatial)
    n_uniform, n_gauss = _n_crop(spatial, _UNIFORM_WIN), _n_crop(spatial, _GAUSS_WIN)
    nan = np.full(n, math.nan)

    out = {
        "psnr": _psnr_from_mse(s["sse"] / n_vox, r),
        "ssim": nan if uniform is None else 100.0 * s["crop_uniform"] / n_uniform,
        "ssim_gauss": nan if gauss is None else 100.0 * s["crop_gauss"] / n_gauss,
        "mae": s["sae"] / n_vox,
    }
    if mask_mode == 1:
        n_m = s["n_mask"]
        with np.errstate(invalid="ignore", divide="ignore"):
            inside = {k: np.where(n_m > 0, s[k] / n_m, math.nan) for k in s}
        out["psnr_brain"] = _psnr_from_mse(inside["sse_mask"], r)
        out["ssim_brain"] = nan if uniform is None else 100.0 * inside["mask_uniform"]
        out["ssim_gauss_brain"] = nan if gauss is None else 100.0 * inside["mask_gauss"]
        out["mae_brain"] = inside["sae_mask"]
    if data_range is None:  # icon_mean: data range = maximum of the normalised target
        ok = r > 0
        out = {k: np.where(ok, v, math.nan) for k, v in out.items()}
    return out


def psnr_ssim_batch(
    target: np.ndarray, pred: np.ndarray, data_range: float = 1.0, *, ssim: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """PSNR (dB; ``inf`` for equal images, NaN for NaN ones) and SSIM (a fraction, scikit-image's
    default 7x7 window; None where it does not fit or ``ssim=False``) of every item of
    (N, *spatial) batches as they are, without normalisation: the trainer's validation."""
    t, p = np.asarray(target), np.asarray(pred)
    if t.shape != p.shape:
        raise ValueError(f"prediction shape {p.shape} differs from target shape {t.shape}")
    if metrics_kernel.load() is None:
        t, p = t.astype(np.float64, copy=False), p.astype(np.float64, copy=False)
        smap = ssim_map_batch(t, p, data_range, gauss=False) if ssim else None
        return psnr_batch(t, p, data_range), None if smap is None else _crop_mean(smap, False)
    if t.dtype not in (np.float32, np.float64) or p.dtype != t.dtype:
        t, p = t.astype(np.float64), p.astype(np.float64)
    n, spatial = t.shape[0], t.shape[1:]
    uniform = _kernel_windows(spatial, gauss=False)[0] if ssim else None
    ones = np.ones(n)
    s = metrics_kernel.run(
        t,
        p,
        None,
        dims3=t.ndim == 4,
        st=ones,
        sp=ones,
        mask_mode=0,
        data_range=ones * data_range,
        uniform=uniform,
        gauss=None,
    )
    ps = _psnr_from_mse(s["sse"] / math.prod(spatial), data_range)
    return ps, None if uniform is None else s["crop_uniform"] / _n_crop(spatial, _UNIFORM_WIN)


def compute(
    protocol: str,
    pred: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics of one image pair under ``protocol``.

    ``pred`` and ``target`` are 2D slices for the 2D protocols, 3D volumes (or slice stacks) for
    the 3D ones; intensities as stored (``[0, 1]``); ``labels``: tissue classes for the region
    metrics. Returns ``{metric: value}``.
    """
    proto = get_protocol(protocol)
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    if pred.ndim != proto.dims:
        raise ValueError(f"protocol {protocol!r} expects {proto.dims}D images, got {pred.ndim}D")
    if mask is not None and np.shape(mask) != target.shape:
        raise ValueError(f"mask shape {np.shape(mask)} differs from target shape {target.shape}")
    batch = [None if a is None else np.asarray(a)[None] for a in (mask, labels)]
    res = compute_batch(protocol, pred[None], target[None], *batch)
    return {k: float(v[0]) for k, v in res.items()}


def compute_volume(
    protocol: str,
    pred: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> list[tuple[int, str, float]]:
    """Metrics of a volume whose last axis holds the axial slices.

    2D protocols evaluate every slice where the target is not empty; the 3D ones evaluate the
    volume once (slice = -1). Returns ``(slice, metric, value)`` rows; a slice (or volume)
    without lesion gets no ``_lesion`` rows.
    """
    proto = get_protocol(protocol)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    if proto.dims == 3:
        res = compute(protocol, pred, target, mask, labels)
        where = regions.presence(
            None if mask is None else np.asarray(mask)[None],
            None if labels is None else np.asarray(labels)[None],
        )
        return [(-1, k, v) for k, v in res.items() if not regions.without_region(k, where, 0)]
    zs = [z for z in range(target.shape[-1]) if np.any(target[..., z])]
    if not zs:
        return []
    stack = [np.moveaxis(np.asarray(a)[..., zs], -1, 0) for a in (pred, target)]
    m, lab = (
        None if a is None else np.moveaxis(np.asarray(a)[..., zs], -1, 0) for a in (mask, labels)
    )
    res = compute_batch(protocol, *stack, m, lab)
    where = regions.presence(m, lab)
    return [
        (z, k, float(v[i]))
        for i, z in enumerate(zs)
        for k, v in res.items()
        if not regions.without_region(k, where, i)
    ]
