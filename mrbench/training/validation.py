"""Validation scores: mean PSNR/SSIM of both directions on a fixed, evenly spaced set of paired
validation slices (``val_max_slices``, ``val_batch_size``), with the method's diagnostics."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mrbench.domain import DIRECTIONS
from mrbench.slices import SliceStore
from mrbench.training import acceleration, valmetrics
from mrbench.training.sampling import collate, to_device


def validation_rows(store: SliceStore, max_slices: int) -> np.ndarray:
    n = len(store)
    if n <= max_slices:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_slices).round().astype(int))


@torch.inference_mode()
def validate(
    method: nn.Module,
    store: SliceStore,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
    amp: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Mean PSNR/SSIM of both directions on paired validation slices (images mapped to [0, 1]).

    Runs under its own fixed seed in a forked RNG, so sampling methods validate reproducibly and
    the training random stream is left untouched."""
    was_training = method.training
    method.eval()
    scores: dict[str, list[float]] = {f"{m}_{d}": [] for m in ("psnr", "ssim") for d in DIRECTIONS}
    devices = [torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for a in range(0, len(rows), batch_size):
            batch = to_device(collate([store[int(i)] for i in rows[a : a + batch_size]]), device)
            for d in DIRECTIONS:
                src, dst = d.split("_to_")
                with acceleration.autocast(device, amp):
                    pred = method.translate(batch[src], d).float()
                if not bool(torch.isfinite(pred).all()):  # scored NaN, never clamped to a score
                    pred = torch.full_like(pred, math.nan)
                pred = ((pred.clamp(-1, 1) + 1) / 2).cpu().numpy()
                target = ((batch[dst].float() + 1) / 2).cpu().numpy()
                scores[f"psnr_{d}"] += valmetrics.psnr_batch(target[:, 0], pred[:, 0]).tolist()
                scores[f"ssim_{d}"] += valmetrics.ssim_batch(target[:, 0], pred[:, 0]).tolist()
                _diagnostics(method, batch[src], batch[dst], d, scores)
    method.train(was_training)
    out = {k: float(np.mean(v)) for k, v in scores.items()}
    out["psnr"] = float(np.mean([out[f"psnr_{d}"] for d in DIRECTIONS]))
    out["ssim"] = float(np.mean([out[f"ssim_{d}"] for d in DIRECTIONS]))
    for key in [k for k in out if k.endswith("_t1_to_t2")]:
        stem = key.removesuffix("_t1_to_t2")
        if stem not in out:  # diagnostics: the mean of both directions as for psnr/ssim
            out[stem] = float(np.mean([out[f"{stem}_{d}"] for d in DIRECTIONS]))
    return out


def _diagnostics(
    method: nn.Module,
    source: torch.Tensor,
    target: torch.Tensor,
    direction: str,
    scores: dict[str, list[float]],
) -> None:
    """PSNR of the method's intermediate images against the input and the target."""
    extra = getattr(method, "validation_outputs", None)
    if extra is None:
        return
    to01 = lambda x: ((x.float().clamp(-1, 1) + 1) / 2).cpu().numpy()[:, 0]  # noqa: E731
    src, tgt = to01(source), to01(target)
    for name, images in extra(source, direction).items():
        for ref_name, ref in (("input", src), ("target", tgt)):
            key = f"psnr_{name}_vs_{ref_name}_{direction}"
            values = [valmetrics.psnr(r, p) for r, p in zip(ref, to01(images), strict=True)]
            scores.setdefault(key, []).extend(values)
