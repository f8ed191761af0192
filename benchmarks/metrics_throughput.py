"""Evaluation throughput: slices per second of ``mrbench.metrics.compute`` per protocol and size.

Every test slice of every (dataset, method, seed, direction) is scored under each configured
protocol, so this rate bounds the evaluation rules' time: slices / rate = seconds per metrics
job. The images are smooth brain-like blobs with noise (values in [0, 1], a brain mask covering
about half of the slice); metric cost does not depend on the content. The 2D protocols score a
subject's ``depth`` slices per call (``compute_batch``, as the evaluation does), ``volume3d`` one
stack of ``depth`` slices per call, the trainer's validation a batch of ``depth`` slices; every
rate is in slices/s. ``--code-root`` measures another checkout (an older one scores one slice per
call through scikit-image) for before/after pairs.

    python benchmarks/metrics_throughput.py [--quick] [--sizes 32,128,256] [--code-root DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import write_table  # noqa: E402


def brain_like(size: int, depth: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Target, prediction and mask stacks of shape (depth, size, size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    mask = (xx**2 / 0.16 + yy**2 / 0.12) < 1
    base = np.exp(-(xx**2 + yy**2) * 6) * mask
    target = np.stack([base * (0.8 + 0.2 * np.cos(k)) for k in range(depth)]).astype(np.float32)
    pred = np.clip(target + rng.normal(0, 0.03, target.shape), 0, 1).astype(np.float32)
    return target, pred, np.broadcast_to(mask, target.shape).copy()


def rate(fn, n_items: int, min_seconds: float) -> float:
    fn()  # warm-up (scikit-image imports, caches)
    done, t0 = 0, time.perf_counter()
    while True:
        fn()
        done += n_items
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return done / elapsed


def _validation_metrics(valmetrics, target: np.ndarray, pred: np.ndarray) -> None:
    if hasattr(valmetrics, "psnr_batch"):
        valmetrics.psnr_batch(target, pred)
        valmetrics.ssim_batch(target, pred)
        return
    for t, p in zip(target, pred, strict=True):
        valmetrics.psnr(t, p)
        valmetrics.ssim(t, p)


def _subject_2d(metrics, name: str, pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> None:
    if hasattr(metrics, "compute_batch"):
        metrics.compute_batch(name, pred, target, mask)
        return
    for p, t, m in zip(pred, target, mask, strict=True):
        metrics.compute(name, p, t, m)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing per case")
    parser.add_argument("--sizes", default="32,128,256", help="image sizes (px)")
    parser.add_argument("--code-root", type=Path, default=None, help="measure another checkout")
    parser.add_argument("--name", default="metrics_throughput", help="results/<name>.csv")
    args = parser.parse_args(argv)
    if args.code_root is not None:
        sys.path.insert(0, str(args.code_root.resolve()))
        for mod in [m for m in sys.modules if m == "mrbench" or m.startswith("mrbench.")]:
            del sys.modules[mod]
    from mrbench import metrics, valmetrics
    from mrbench.metrics import PROTOCOLS, compute

    min_s = 0.5 if args.quick else 2.0
    depth = 16
    rows = []
    for size in [int(s) for s in args.sizes.split(",") if s]:
        target, pred, mask = brain_like(size, depth, seed=size)
        stacks = [np.moveaxis(a, 0, -1) for a in (pred, target, mask)]
        for name, proto in PROTOCOLS.items():
            if proto.dims == 3:
                r = rate(partial(compute, name, *stacks), depth, min_s)
            else:
                r = rate(partial(_subject_2d, metrics, name, pred, target, mask), depth, min_s)
            rows.append(
                {"image_size": size, "protocol": name, "slices_per_s": r, "ms_per_slice": 1e3 / r}
            )
        r = rate(partial(_validation_metrics, valmetrics, target, pred), depth, min_s)
        rows.append(
            {
                "image_size": size,
                "protocol": "validation (trainer)",
                "slices_per_s": r,
                "ms_per_slice": 1e3 / r,
            }
        )
    write_table(
        args.name,
        rows,
        "Evaluation metrics: slices per second per protocol (all metrics of a protocol per call)",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
