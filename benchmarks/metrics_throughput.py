"""Evaluation throughput: slices per second of every metric protocol, per implementation and size.

Every test slice of every (dataset, method, seed, direction) is scored under each configured
protocol, so this rate bounds the evaluation rules' time: slices / rate = seconds per metrics
job. The images are smooth brain-like blobs with noise (values in [0, 1], a brain mask covering
about half of the slice); metric cost does not depend on the content. The 2D protocols score a
subject's ``depth`` slices per call (``compute_batch``, as the evaluation does), the 3D ones
(``volume3d``, ``brasyn``) one stack of ``depth`` slices per call, the trainer's validation a
batch of ``depth`` slices; every rate is in slices/s. Every protocol's call includes MS-SSIM;
three rows time the newer metrics alone: ``msssim (2D)`` (MS-SSIM of max01-normalised slices),
``lesion + healthy (2D, max01)`` (the two in-region passes that tissue labels add to a 2D
protocol, with a lesion in every slice) and ``brasyn + regions (3D)`` (the BraSyn protocol of
one labelled volume, all its metrics).

Implementations, measured interleaved (round robin, ``--repeats`` rounds; best and median):

- ``kernel``: :func:`mrbench.evaluation.metrics.compute_batch` with the compiled kernel (the
default path);
- ``numpy``: the same with the kernel switched off (the vectorised numpy/scipy path, which was
  the evaluation's code before the kernel);
- ``skimage``: :mod:`mrbench.evaluation.reference`, one scikit-image call per metric and slice (the
  specification; ``--no-reference`` skips it).

``slices_per_cpu_s`` divides the slices by the process's CPU time (all threads): on a machine
shared with other jobs it moves less than the wall-clock rate. Threads: ``OMP_NUM_THREADS``
(default 2 here).

    OMP_NUM_THREADS=2 python benchmarks/metrics_throughput.py [--quick] [--sizes 64,256]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")  # before numpy starts its thread pools

import argparse  # noqa: E402
import contextlib  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

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


def rate(fn: Callable[[], object], n_items: int, min_seconds: float) -> tuple[float, float]:
    """(items per wall second, items per CPU second) of repeated ``fn()`` calls."""
    done, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        done += n_items
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return done / elapsed, done / max(time.process_time() - c0, 1e-9)


@contextlib.contextmanager
def numpy_only() -> Iterator[None]:
    """The kernel switched off: mrbench.evaluation.metrics falls back to numpy/scipy."""
    from mrbench.evaluation import kernel as metrics_kernel

    load = metrics_kernel.load
    metrics_kernel.load = lambda: None
    try:
        yield
    finally:
        metrics_kernel.load = load


def _validation(target: np.ndarray, pred: np.ndarray) -> None:
    from mrbench.training import valmetrics

    valmetrics.psnr_batch(target, pred)
    valmetrics.ssim_batch(target, pred)


def _validation_per_slice(target: np.ndarray, pred: np.ndarray) -> None:
    from mrbench.training import valmetrics

    for t, p in zip(target, pred, strict=True):
        valmetrics.psnr(t, p)
        valmetrics.ssim(t, p)


def lesion_labels(size: int, mask: np.ndarray) -> np.ndarray:
    """Tissue labels of ``brain_like``'s stack: white matter (3) in the brain mask and a
    lesion (4) of about 3 % of the brain in every slice (the worst case: all slices score it)."""
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    blob = ((xx - 0.1) ** 2 + yy**2) < 0.06**2 * 2
    return np.where(mask, np.where(blob, 4, 3), 0).astype(np.uint8)


def _regions_only(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, labels) -> None:
    """What the lesion and healthy-tissue values add to a protocol's call: one in-region pass
    per region (the kernel's, as ``compute_batch`` does)."""
    from mrbench.evaluation import metrics, regions

    kernel = metrics.metrics_kernel.load() is not None
    fn = metrics._compute_batch_kernel if kernel else metrics._compute_batch_numpy
    for region in regions.region_masks(mask, labels).values():
        fn("max01", pred, target, region)


def _msssim(pred: np.ndarray, target: np.ndarray) -> None:
    """MS-SSIM alone, on images normalised as max01 does (the kernel or scipy by
    ``metrics_kernel.load``)."""
    from mrbench.evaluation import msssim

    scale = target.reshape(len(target), -1).max(axis=1)[:, None, None].astype(np.float64)
    msssim.msssim_batch(target / scale, pred / scale, 1.0)


def cases(size: int, depth: int, reference: bool) -> list[tuple[str, str, Callable]]:
    """(protocol, implementation, call) for every protocol at one image size."""
    from mrbench.evaluation import reference as metrics_reference
    from mrbench.evaluation.metrics import PROTOCOLS, compute_batch

    target, pred, mask = brain_like(size, depth, seed=size)
    stacks = [a[None] for a in (pred, target, mask)]  # one (depth, size, size) volume
    out = []
    for name, proto in PROTOCOLS.items():
        args = stacks if proto.dims == 3 else (pred, target, mask)
        impls = {
            "kernel": partial(compute_batch, name, *args),
            "numpy": partial(_with_numpy, compute_batch, name, *args),
        }
        if reference:
            impls["skimage"] = partial(metrics_reference.compute_batch, name, *args)
        out += [(name, impl, fn) for impl, fn in impls.items()]
    labels = lesion_labels(size, mask[0])[None].repeat(depth, axis=0)
    for name, fn, args in (
        ("msssim (2D)", _msssim, (pred, target)),
        ("lesion + healthy (2D, max01)", _regions_only, (pred, target, mask, labels)),
        ("brasyn + regions (3D)", partial(compute_batch, "brasyn"), (*stacks, labels[None])),
    ):
        out.append((name, "kernel", partial(fn, *args)))
        out.append((name, "numpy", partial(_with_numpy, fn, *args)))
    out.append(("validation (trainer)", "kernel", partial(_validation, target, pred)))
    out.append(("validation (trainer)", "numpy", partial(_with_numpy, _validation, target, pred)))
    if reference:
        out.append(
            ("validation (trainer)", "skimage", partial(_validation_per_slice, target, pred))
        )
    return out


def _with_numpy(fn, *args) -> None:
    with numpy_only():
        fn(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing per case")
    parser.add_argument("--sizes", default="64,256", help="image sizes (px)")
    parser.add_argument("--depth", type=int, default=16, help="slices per call")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per case")
    parser.add_argument("--no-reference", action="store_true", help="skip the skimage path")
    parser.add_argument("--name", default="metrics_throughput", help="results/<name>.csv")
    args = parser.parse_args(argv)
    from mrbench.evaluation import kernel as metrics_kernel

    if metrics_kernel.load() is None:
        print("the compiled metrics kernel is unavailable: 'kernel' rows measure numpy")
    min_s = 0.5 if args.quick else 2.0
    rows = []
    for size in [int(s) for s in args.sizes.split(",") if s]:
        todo = cases(size, args.depth, not args.no_reference)
        for _, _, fn in todo:
            fn()  # warm-up: imports, the kernel build, caches
        walls: dict[int, list[float]] = {i: [] for i in range(len(todo))}
        cpus: dict[int, list[float]] = {i: [] for i in range(len(todo))}
        for _ in range(args.repeats):
            for i, (_, impl, fn) in enumerate(todo):
                slow = impl == "skimage" and size > 128
                w, c = rate(fn, args.depth, min_s / 4 if slow else min_s)
                walls[i].append(w)
                cpus[i].append(c)
        numpy_best = {
            proto: max(walls[i]) for i, (proto, impl, _) in enumerate(todo) if impl == "numpy"
        }
        for i, (proto, impl, _) in enumerate(todo):
            rows.append(
                {
                    "image_size": size,
                    "protocol": proto,
                    "implementation": impl,
                    "threads": metrics_kernel.default_threads(),
                    "slices_per_s_best": max(walls[i]),
                    "slices_per_s_median": statistics.median(walls[i]),
                    "slices_per_cpu_s": max(cpus[i]),
                    "speedup_vs_numpy": max(walls[i]) / numpy_best[proto]
                    if proto in numpy_best
                    else float("nan"),
                    "repeats": args.repeats,
                }
            )
    write_table(
        args.name,
        rows,
        "Evaluation metrics: slices per second per protocol (all metrics of a protocol per call)",
    )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (1 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
