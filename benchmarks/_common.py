"""Shared helpers of the benchmark scripts: machine description, table printing, CSV output.

Every script prints its table and writes ``benchmarks/results/<name>.csv`` with the machine in
the first columns, so figures from different machines can be stacked and compared.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """CPU model and cores, GPU, python and torch versions of this machine."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "gpu": gpu,
        "torch": torch.__version__.split("+")[0],
        "python": platform.python_version(),
    }


def machine_line() -> str:
    m = machine()
    return f"{m['cpu']}, {m['cores']} cores, GPU: {m['gpu']}, torch {m['torch']}"


def timed(fn, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:  # NaN
            return "nan"
        return f"{v:.4g}"
    return str(v)


def write_table(name: str, rows: Sequence[dict[str, Any]], title: str) -> Path:
    """Print ``rows`` as an aligned table and write them (with the machine) to CSV."""
    if not rows:
        raise ValueError(f"{name}: no rows to write")
    cols = list(rows[0])
    for r in rows[1:]:
        cols += [c for c in r if c not in cols]
    widths = {c: max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in cols}
    print(f"\n{title}\n{machine_line()}\n")
    print("  ".join(c.rjust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(fmt(r.get(c, "")).rjust(widths[c]) for c in cols))
    path = RESULTS / f"{name}.csv"
    formatted = [{c: fmt(r.get(c, "")) for c in cols} for r in rows]
    write_csv(path, machine(), formatted, cols)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return path


def write_csv(
    path: Path, machine: dict[str, Any], rows: Sequence[dict[str, Any]], cols: Sequence[str]
) -> None:
    """Write ``rows`` (columns ``cols``) to ``path`` as CSV with the ``machine`` columns first in
    every row; atomically (a temporary file beside it, then renamed), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, [*machine, *cols])
        w.writeheader()
        for r in rows:
            w.writerow({**machine, **r})
    os.replace(tmp, path)


def synthetic_store(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    """A slice store of ``n`` random slices of ``size`` px (the layout of mrbench.slices)."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for mod in ("t1", "t2"):
        arr = np.lib.format.open_memmap(folder / f"{mod}.npy", "w+", np.float32, (n, size, size))
        for i in range(n):
            arr[i] = rng.random((size, size), dtype=np.float32)
        arr.flush()
        del arr
    mask = np.lib.format.open_memmap(folder / "mask.npy", "w+", np.uint8, (n, size, size))
    mask[:] = 1
    mask.flush()
    del mask
    subjects = [f"s{i // 20:03d}" for i in range(n)]
    pd.DataFrame(
        {"row": range(n), "subject": subjects, "slice": [i % 20 for i in range(n)]}
    ).to_csv(folder / "index.tsv", sep="\t", index=False)
    meta = {"size": size, "n_slices": n, "subjects": [], "synthetic": True}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder
