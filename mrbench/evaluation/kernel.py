"""The compiled metrics kernel (``metrics_kernel.c``): build, cache, load and call it.

Why compiled code: scikit-image's SSIM is five filtered moment images and a dozen element-wise
operations on them, and numpy runs each as a separate pass over memory. On a 2-core machine one
such pass over a 256 x 256 float64 slice costs about 50 microseconds, so the numpy version of the
benchmark's protocols (two SSIM maps, in-mask means, PSNR, MAE) tops out at tens of slices per
second. The C kernel does the same arithmetic (float64, the same windows, borders and crop) row
by row while the data is in cache, about 20-50x faster.

The source is compiled on first use with the system C compiler (``$CC``, ``cc``, ``gcc`` or
``clang``; about a second) into ``$MRBENCH_CACHE_DIR`` (default ``~/.cache/mrbench``), under a
name that hashes the source, the compiler flags and the CPU, so concurrent jobs and machines with
different instruction sets never share a stale build. Without a compiler, or with
``MRBENCH_METRICS_KERNEL=numpy``, :func:`load` returns None and :mod:`mrbench.evaluation.metrics`
uses its numpy version (same values, slower).

Work is split over threads (``OMP_NUM_THREADS``, else the usable cores): groups of slices for 2D
batches, groups of output planes for volumes; the kernel runs without the GIL.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("metrics_kernel.c")
#: per-item outputs of the kernel, in its order (see metrics_kernel.c)
FIELDS = (
    "sse",
    "sae",
    "sse_mask",
    "sae_mask",
    "n_mask",
    "max_x",
    "crop_uniform",
    "mask_uniform",
    "crop_gauss",
    "mask_gauss",
    "crop_cs",  # the Gaussian window's contrast-structure map over the crop (MS-SSIM's term)
)
_F = {name: i for i, name in enumerate(FIELDS)}
_FLAG_SETS = (
    ["-O3", "-march=native", "-std=gnu99", "-ffp-contract=fast"],
    ["-O3", "-std=gnu99"],
)


def _cache_dir() -> Path:
    env = os.environ.get("MRBENCH_CACHE_DIR")
    if env:
        return Path(env) / "kernels"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mrbench" / "kernels"


def _cpu_tag() -> str:
    """Machine and CPU feature flags: a build with -march=native belongs to one kind of CPU."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features", "model name")):
                flags += line
    except OSError:
        pass
    return f"{platform.system()}-{platform.machine()}-{flags}"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class CompileError(RuntimeError):
    """The compiler rejected the kernel (or these flags)."""


def _build(compiler: str, flags: list[str], out: Path) -> None:
    """Compile to a temporary name in ``out``'s folder, then rename (atomic for other jobs).
    OSError: the folder is not writable; CompileError: the compiler failed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        cmd = [compiler, *flags, "-shared", "-fPIC", "-o", tmp, str(SOURCE)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            raise CompileError(f"{' '.join(cmd)}: {exc}") from None
        if proc.returncode != 0:
            raise CompileError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[:300]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _built(compiler: str, flags: list[str], name: str) -> Path:
    """The kernel built with ``flags`` in the cache folder, or in the temporary folder where
    the cache folder is not writable (a read-only home)."""
    path = _cache_dir() / name
    if path.exists():
        return path
    try:
        _build(compiler, flags, path)
        return path
    except OSError:
        path = Path(tempfile.gettempdir()) / f"mrbench-kernels-{os.getuid()}" / name
        if not path.exists():
            _build(compiler, flags, path)
        return path


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, lg, i, d = ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_double
    lib.mrb_metrics.restype = i
    # t, p, m, f32, n, A, B, C, dims3, o0, o1, st, sp, mask_mode, range, full,
    # wu, Lu, cn_u, wg, Lg, out, want_cs
    lib.mrb_metrics.argtypes = [p, p, p, i, lg, lg, lg, lg, i, lg, lg, p, p, i, p, i]
    lib.mrb_metrics.argtypes += [p, lg, d, p, lg, p, i]
    return lib


@functools.cache
def load() -> ctypes.CDLL | None:
    """The compiled kernel, built on first use; None (with one warning) where it cannot be
    built, or when ``MRBENCH_METRICS_KERNEL=numpy`` asks for the numpy version."""
    if os.environ.get("MRBENCH_METRICS_KERNEL", "").lower() in ("numpy", "off", "0"):
        return None
    compiler = _compiler()
    if compiler is None:
        warnings.warn(
            "mrbench.evaluation.metrics: no C compiler (cc/gcc/clang) found; "
            "metrics use numpy (slower)",
            stacklevel=2,
        )
        return None
    try:
        source = SOURCE.read_bytes()
    except OSError as exc:
        warnings.warn(
            f"mrbench.evaluation.metrics: {exc}; metrics use numpy (slower)", stacklevel=2
        )
        return None
    errors = []
    for flags in _FLAG_SETS:
        key = hashlib.sha256(
            b"\0".join([source, compiler.encode(), " ".join(flags).encode(), _cpu_tag().encode()])
        ).hexdigest()[:16]
        try:
            path = _built(compiler, flags, f"metrics_kernel-{key}.so")
            return _bind(ctypes.CDLL(str(path)))
        except (OSError, CompileError) as exc:
            errors.append(str(exc))
    warnings.warn(
        f"mrbench.evaluation.metrics: cannot build {SOURCE.name} ({errors[-1]}); "
        "metrics use numpy (slower)",
        stacklevel=2,
    )
    return None


def default_threads() -> int:
    """Threads for the kernel: ``OMP_NUM_THREADS`` (Snakemake sets it to a job's threads), else
    the cores this process may use."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@functools.cache
def _pool(threads: int, pid: int) -> ThreadPoolExecutor:
    """Worker threads, per process: a forked child has none of its parent's threads."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mrbench-metrics")


def _ptr(a: np.ndarray | None, offset: int = 0) -> int | None:
    return None if a is None else a.ctypes.data + offset * a.itemsize


def run(
    target: np.ndarray,
    pred: np.ndarray,
    mask: np.ndarray | None,
    *,
    dims3: bool,
    st: np.ndarray,
    sp: np.ndarray,
    mask_mode: int,
    data_range: np.ndarray | None,
    uniform: tuple[np.ndarray, float] | None,
    gauss: np.ndarray | None,
    threads: int | None = None,
    cs: bool = False,
) -> dict[str, np.ndarray]:
    """Per-item sums (:data:`FIELDS`) of (N, H, W) slices or (N, A, B, C) volumes.

    ``st``/``sp``: per-item divisors of target and prediction (an item whose divisor is <= 0
    becomes zeros); ``mask_mode`` 0: no mask, 1: in-mask sums (full SSIM maps), 2: images
    multiplied by the mask; ``data_range`` per item, or None for the maximum of the normalised
    target (2D only); ``uniform``: (window taps, covariance factor) or None; ``gauss``: taps or
    None; ``cs``: also ``crop_cs``. ``target``/``pred``: float32 or float64, ``mask``: 0/1.
    """
    lib = load()
    if lib is None:
        raise RuntimeError("the compiled metrics kernel is not available")
    target, pred, mask = _contiguous(target, pred, mask)
    n = target.shape[0]
    shape = (1, *target.shape[1:]) if target.ndim == 3 else target.shape[1:]
    a_len, b_len, c_len = shape
    item = a_len * b_len * c_len
    st, sp = (np.ascontiguousarray(v, dtype=np.float64) for v in (st, sp))
    rng = None if data_range is None else np.ascontiguousarray(data_range, dtype=np.float64)
    if rng is None and dims3:
        raise ValueError("data_range from the target maximum needs whole items (2D)")
    wu, cn_u = (None, 1.0) if uniform is None else (np.ascontiguousarray(uniform[0]), uniform[1])
    wg = None if gauss is None else np.ascontiguousarray(gauss, dtype=np.float64)
    full = int(mask_mode == 1 and mask is not None)
    f32 = int(target.dtype == np.float32)
    threads = max(1, threads or default_threads())
    units = _work_units(n, a_len, dims3, threads)
    outs = [np.zeros((u[1], len(FIELDS))) for u in units]

    def call(k: int) -> int:
        i, cnt, o0, o1 = units[k]
        return lib.mrb_metrics(
            _ptr(target, i * item),
            _ptr(pred, i * item),
            _ptr(mask, i * item),
            f32,
            cnt,
            a_len,
            b_len,
            c_len,
            int(dims3),
            o0,
            o1,
            _ptr(st, i),
            _ptr(sp, i),
            mask_mode,
            _ptr(rng, i),
            full,
            _ptr(wu),
            0 if wu is None else wu.size,
            cn_u,
            _ptr(wg),
            0 if wg is None else wg.size,
            _ptr(outs[k]),
            int(cs),
        )

    if len(units) == 1 or threads == 1:
        codes = [call(k) for k in range(len(units))]
    else:
        codes = list(_pool(threads, os.getpid()).map(call, range(len(units))))
    if any(c == -2 for c in codes):
        raise ValueError("metrics kernel: windows must have 7 or 11 taps")
    if any(codes):
        raise MemoryError("metrics kernel: out of memory")
    return _merge(n, units, outs)


def _contiguous(
    target: np.ndarray, pred: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """C-contiguous inputs for the kernel: float32 pair (or both float64), mask as uint8 0/1."""
    if target.dtype != pred.dtype or target.dtype not in (np.float32, np.float64):
        target, pred = target.astype(np.float64), pred.astype(np.float64)
    target, pred = np.ascontiguousarray(target), np.ascontiguousarray(pred)
    if mask is not None:
        mask = mask.view(np.uint8) if mask.dtype == np.bool_ else (mask != 0).view(np.uint8)
        mask = np.ascontiguousarray(mask)
    return target, pred, mask


def _work_units(n: int, a_len: int, dims3: bool, threads: int) -> list[tuple[int, int, int, int]]:
    """Work units (first item, items, first output plane, end plane): groups of output planes
    of each volume (3D), groups of items (2D), about one per thread."""
    if dims3:
        per = -(-a_len // min(threads, a_len))
        return [(i, 1, o, min(o + per, a_len)) for i in range(n) for o in range(0, a_len, per)]
    per = -(-n // min(threads, max(n, 1))) if n else 1
    return [(i, min(per, n - i), 0, 1) for i in range(0, n, per)]


def _merge(
    n: int, units: list[tuple[int, int, int, int]], outs: list[np.ndarray]
) -> dict[str, np.ndarray]:
    """Per-item sums of the units' outputs (the maximum for ``max_x``), by field name."""
    res = np.zeros((n, len(FIELDS)))
    res[:, _F["max_x"]] = -np.inf
    for (i, cnt, _, _), o in zip(units, outs, strict=True):
        part = res[i : i + cnt]
        mx = np.maximum(part[:, _F["max_x"]], o[:, _F["max_x"]])
        part += o
        part[:, _F["max_x"]] = mx
    return {name: res[:, j] for name, j in _F.items()}
