"""Validation scores: mean PSNR/SSIM of both directions on a fixed, evenly spaced set of paired
validation slices (``val_max_slices``, ``val_batch_size``), with the method's diagnostics.

The method translates ``a_to_b`` and ``b_to_a``; the scores are logged under the contrast
directions of the store's pair (``psnr_t2_to_flair``, ``ssim_flair_to_t2``;
:func:`mrbench.pairs.contrast_direction`), so T1w/T2w runs log ``psnr_t1_to_t2`` as before."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from mrbench import pairs
from mrbench.errors import InputError, TrainingError
from mrbench.finite import first_non_finite, translation_problem
from mrbench.pairs import DOMAINS, NEUTRAL_DIRECTIONS
from mrbench.slices import SliceStore
from mrbench.training import valmetrics
from mrbench.training.sampling import collate, to_device


def validation_rows(store: SliceStore, max_slices: int) -> np.ndarray:
    n = len(store)
    if n <= max_slices:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_slices).round().astype(int))


@contextlib.contextmanager
def exported_state(
    method: nn.Module, slices: Callable[[], Iterator[dict[str, torch.Tensor]]], seed: int
) -> Iterator[None]:
    """Inside: the method's test-time statistics (mean style or attribute codes) as export
    computes them (:meth:`prepare_inference` on the training slices under ``seed``), so that
    validation scores, and selects, the model that would be written; afterwards the buffers
    training keeps (e.g. running means) are restored. A method without such statistics never
    reads a slice: ``slices()`` is a lazy iterator."""
    saved = {name: buf.detach().clone() for name, buf in method.named_buffers()}
    was_training = method.training
    method.eval()
    first = next(method.parameters(), None)
    # the training random streams (CPU and the GPU's) are left untouched
    devices = [first.device] if first is not None and first.device.type == "cuda" else []
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            method.prepare_inference(slices())
        yield
    finally:
        with torch.no_grad():
            for name, buf in method.named_buffers():
                if name in saved:
                    buf.copy_(saved[name])
        method.train(was_training)


@torch.inference_mode()
def validate(
    method: nn.Module,
    store: SliceStore,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
) -> dict[str, float]:
    """Mean PSNR/SSIM of both directions on paired validation slices (images mapped to [0, 1]).

    In float32 even when the run trains under bfloat16 autocast (``amp``): the best weights are
    chosen on the outputs that the test translation, in float32, will give.

    Runs under its own fixed seed in a forked RNG, so sampling methods validate reproducibly and
    the training random stream is left untouched."""
    was_training = method.training
    method.eval()
    pair = store.pair_contrasts
    # the contrast name of each neutral direction: what the logs show
    named = {d: pairs.contrast_direction(d, pair) for d in NEUTRAL_DIRECTIONS}
    directions = tuple(named.values())
    scores: dict[str, list[float]] = {f"{m}_{d}": [] for m in ("psnr", "ssim") for d in directions}
    devices = [torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for a in range(0, len(rows), batch_size):
            batch = collate([store[int(i)] for i in rows[a : a + batch_size]])
            bad = first_non_finite({k: batch[k] for k in DOMAINS})
            if bad is not None:  # a corrupt store, not a diverged model
                raise InputError(
                    f"{store.folder}: validation slices hold non-finite values ({bad}); the "
                    "slice store is corrupt: rebuild it (mrbench slices)"
                )
            batch = to_device(batch, device)
            for nd, d in named.items():
                src, dst = nd.split("_to_")
                pred = method.translate(batch[src], nd).float()
                problem = translation_problem(pred, batch[src], nan_ok=True)
                if problem is not None:  # never clipped or cut to one channel into a score
                    raise TrainingError(
                        f"method plugin {getattr(method, 'plugin_name', '?')!r}: translate "
                        f"({nd}, {d}) {problem}; a plugin must return (B, 1, H, W) in [-1, 1]"
                    )
                if not bool(torch.isfinite(pred).all()):  # scored NaN, never clamped to a score
                    pred = torch.full_like(pred, math.nan)
                pred = ((pred.clamp(-1, 1) + 1) / 2).cpu().numpy()
                target = ((batch[dst].float() + 1) / 2).cpu().numpy()
                scores[f"psnr_{d}"] += valmetrics.psnr_batch(target[:, 0], pred[:, 0]).tolist()
                scores[f"ssim_{d}"] += valmetrics.ssim_batch(target[:, 0], pred[:, 0]).tolist()
                _diagnostics(method, batch[src], batch[dst], nd, d, scores)
    method.train(was_training)
    out = {k: float(np.mean(v)) for k, v in scores.items()}
    out["psnr"] = float(np.mean([out[f"psnr_{d}"] for d in directions]))
    out["ssim"] = float(np.mean([out[f"ssim_{d}"] for d in directions]))
    for key in [k for k in out if k.endswith(f"_{directions[0]}")]:
        stem = key.removesuffix(f"_{directions[0]}")
        if stem not in out:  # diagnostics: the mean of both directions as for psnr/ssim
            out[stem] = float(np.mean([out[f"{stem}_{d}"] for d in directions]))
    return out


def _diagnostics(
    method: nn.Module,
    source: torch.Tensor,
    target: torch.Tensor,
    direction: str,
    named: str,
    scores: dict[str, list[float]],
) -> None:
    """PSNR of the method's intermediate images against the input and the target, logged under
    the contrast direction ``named`` of the neutral ``direction``."""
    extra = getattr(method, "validation_outputs", None)
    if extra is None:
        return
    to01 = lambda x: ((x.float().clamp(-1, 1) + 1) / 2).cpu().numpy()[:, 0]  # noqa: E731
    src, tgt = to01(source), to01(target)
    for name, images in extra(source, direction).items():
        out = to01(images)
        for ref_name, ref in (("input", src), ("target", tgt)):
            key = f"psnr_{name}_vs_{ref_name}_{named}"
            values = [valmetrics.psnr(r, p) for r, p in zip(ref, out, strict=True)]
            scores.setdefault(key, []).extend(values)
        # a translator collapsed to a near-constant image has a spread near 0 (a healthy one
        # about 1): the per-image standard deviation against the target's
        spread = [float(p.std() / max(float(t.std()), 1e-6)) for p, t in zip(out, tgt, strict=True)]
        scores.setdefault(f"spread_{name}_vs_target_{named}", []).extend(spread)
