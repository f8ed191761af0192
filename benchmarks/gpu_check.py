"""GPU proof: one command, a few minutes on a lent GPU, one CSV that benchmarks/README.md quotes.

Three checks, each a group of rows in ``benchmarks/results/gpu_check.csv``:

1. ``step``: a paper-size (256 px) training step of every registered trainable method (read from
   the plugin registry, so new methods are included without editing this file), in float32, in
   bfloat16 autocast, and in bfloat16 with channels-last weights (the trainer's
   ``memory_format``, whose default the figures should settle on GPUs): s/step, images/s,
   FLOPs/step, peak memory, achieved TFLOP/s and its fraction of the device's *bfloat16* peak
   (``train_throughput.PEAK_TFLOPS``).
2. ``concurrent``: two tiny training jobs started together through ``mrbench train`` with
   ``--device auto``, i.e. through the GPU lock files (:mod:`mrbench.training.gpu`); with one GPU
   the device is shared by two slots (``MRBENCH_GPU_SLOTS=2``), with two or more each job locks its
   own. Rows give each job's device line, its wall time and whether the two overlapped.
3. ``workflow``: the tiny workflow (``config/test.yaml``) end to end with
   ``snakemake --cores 4 --resources gpu=2`` and the GPU resource on, in a scratch copy.

``--dry`` runs the same code on the CPU in seconds: tiny models at 32 px, the two jobs on the
CPU, and ``snakemake -n`` (plan only) for the workflow. A test runs it.

Every row is written to the CSV as soon as it is measured (atomically, the whole file each
time), so a run stopped by its time limit or by a failing tool keeps the rows measured before.
The script runs with the Python that starts it (``sys.executable`` runs the trainings and
``python -m snakemake``) and first checks that the project's dependencies are installed in it:
one line naming the missing ones, before any work.

    python benchmarks/gpu_check.py [--dry] [--out CSV] [--methods a,b] [--batch 4] [--budget S]
    bash benchmarks/gpu_check.sh          # the same, with the timing budget of a lent GPU
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "results" / "gpu_check.csv"
#: exit status when the Python lacks a dependency (nothing was run)
MISSING_STATUS = 3


def missing_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The distributions named in ``pyproject.toml``'s ``dependencies`` that this Python lacks
    (standard library only: it runs before anything else is imported)."""
    import importlib.metadata
    import re
    import tomllib

    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    missing = []
    for req in deps:
        name = re.match(r"[A-Za-z0-9._-]+", req).group(0)
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


TINY_SPEC = {
    "method": "cyclegan_tiny",
    "plugin": "cyclegan",
    "params": {"ngf": 4, "ndf": 4, "n_blocks": 1, "n_layers_d": 1, "pool_size": 2},
    "training": {"steps": 20, "batch_size": 2, "val_every": 10, "checkpoint_every": 10},
}
#: dry mode: the fewest steps that still validate and checkpoint
DRY_TRAINING = {"steps": 2, "batch_size": 2, "val_every": 2, "checkpoint_every": 2}


def step_rows(dry: bool, methods: list[str], batch: int) -> Iterator[dict[str, Any]]:
    """Check 1: a training step of every method in fp32 and bf16 (the trainer's default
    contiguous layout), and bf16 with channels-last weights, the layout that tensor cores favour
    (the trainer's ``memory_format``; slower on the CPU, see benchmarks/README.md). The
    trainer's default determinism settings apply, so the step times are a run's."""
    import torch

    from benchmarks.train_throughput import measure, peak_tflops
    from mrbench.training.runs import configure_determinism
    from mrbench.training.settings import TRAINING_DEFAULTS
    from mrbench_methods import registry

    device = torch.device("cpu" if dry else "cuda")
    configure_determinism(bool(TRAINING_DEFAULTS["deterministic"]), device)
    plugins = {n: c for n, c in sorted(registry().items()) if c.trainable}
    if methods:
        plugins = {n: plugins[n] for n in methods}
    bf16_peak = peak_tflops(device, "bf16", None)
    for name, cls in plugins.items():
        for amp, layout in ((False, "contiguous"), (True, "contiguous"), (True, "channels_last")):
            row: dict[str, Any] = {"check": "step", "method": name}
            try:
                params, size, steps = (dict(cls.tiny_params), 32, 1) if dry else ({}, 256, 5)
                r = measure(
                    name, params, size, batch, steps, device,
                    amp=amp, memory_format=layout, peak=bf16_peak,
                )  # fmt: skip
                row |= {k: r[k] for k in r if k not in ("method", "timed_steps")}
                row["ok"] = True
            except Exception as exc:  # one failing method must not hide the others
                row |= {
                    "precision": "bf16" if amp else "fp32",
                    "memory_format": layout,
                    "ok": False,
                }
                row["detail"] = f"{type(exc).__name__}: {exc}"[:300]
                traceback.print_exc()
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            print(json.dumps(row, default=str), flush=True)
            yield row


def _tiny_data(folder: Path) -> Path:
    from benchmarks._common import synthetic_store

    for split, n in (("train", 24), ("val", 8)):
        synthetic_store(folder / split, n, 16, seed=len(split))
    return folder


def concurrent_rows(dry: bool, work: Path, budget_s: float = 600) -> list[dict[str, Any]]:
    """Check 2: two training jobs at once through the GPU lock files."""
    from mrbench.training.gpu import COUNT_ENV, LOCK_DIR_ENV, SLOTS_ENV, count_gpus

    data = _tiny_data(work / "data")
    env = {**os.environ, "PYTHONPATH": str(ROOT), LOCK_DIR_ENV: str(work / "locks")}
    n_gpus = 0 if dry else count_gpus()
    if n_gpus == 1:
        env[SLOTS_ENV] = "2"
    env.pop(COUNT_ENV, None)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    device = "cpu" if dry else "auto"
    procs, starts = [], []
    spec = TINY_SPEC | ({"training": DRY_TRAINING} if dry else {})
    for k in range(2):
        cmd = [
            sys.executable, "-m", "mrbench.cli", "train", "--spec", json.dumps(spec),
            "--data", str(data), "--out", str(work / f"job{k}"), "--seed", str(k),
            "--device", device, "--no-progress", "--gpu-wait", "60", "--threads", "1",
        ]  # fmt: skip
        starts.append(time.time())
        log = (work / f"job{k}.log").open("w")
        procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=log))
    ends, deadline = [], time.monotonic() + budget_s
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        ends.append(time.time())
    overlap = min(ends) > max(starts)
    rows = []
    for k, p in enumerate(procs):
        dev_file = work / f"job{k}" / "device.txt"
        rows.append(
            {
                "check": "concurrent",
                "method": TINY_SPEC["method"],
                "job": k,
                "ok": p.returncode == 0 and overlap,
                "seconds": round(ends[k] - starts[k], 2),
                "overlapped": overlap,
                "gpus_found": n_gpus,
                "detail": dev_file.read_text().strip()
                if dev_file.exists()
                else (work / f"job{k}.log").read_text()[-300:],
            }
        )
    return rows


def workflow_env(n_gpus: int, work: Path) -> dict[str, str]:
    """The workflow check's environment: this checkout importable, the rules' bare ``python``
    resolved to the Python running this script (a two-line script in a private ``bin`` put
    first on ``PATH``; a link would lose a virtual environment's packages), a private GPU lock
    folder, and with one GPU two jobs per device (``MRBENCH_GPU_SLOTS=2``) so that
    ``--resources gpu=2`` does not start a second training that finds its device locked."""
    import shlex

    from mrbench.training.gpu import COUNT_ENV, LOCK_DIR_ENV, SLOTS_ENV

    shim = work / "bin"
    shim.mkdir(exist_ok=True)
    for name in ("python", "python3"):
        script = shim / name
        script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        script.chmod(0o755)
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, LOCK_DIR_ENV: str(work / "wf-locks")}
    env["PATH"] = os.pathsep.join([str(shim), env.get("PATH", "")])
    env.pop(COUNT_ENV, None)
    if n_gpus == 1:
        env[SLOTS_ENV] = "2"
    return env


def workflow_rows(dry: bool, work: Path, budget_s: float = 900) -> list[dict[str, Any]]:
    """Check 3: the tiny workflow end to end (``-n``: plan only, in dry mode), run by this
    Python's Snakemake; a missing or failing Snakemake or the time limit gives a failed row."""
    from mrbench.training.gpu import count_gpus

    copy = work / "workflow_run"
    copy.mkdir()
    for item in ("Snakefile", "workflow", "config", "envs"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, copy / item)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "4", "--resources", "gpu=2"]
    cmd += ["--configfile", "config/test.yaml", "--config", "gpu_resource=True"]
    if dry:
        cmd.append("-n")
    env = workflow_env(0 if dry else count_gpus(), work)
    t0 = time.time()
    try:
        res = subprocess.run(
            cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=max(1.0, budget_s)
        )
        ok, tail = res.returncode == 0, (res.stdout + res.stderr).strip().splitlines()[-3:]
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, tail = False, [f"{type(exc).__name__}: {exc}"]
    return [
        {
            "check": "workflow",
            "method": "config/test.yaml",
            "ok": ok,
            "seconds": round(time.time() - t0, 2),
            "detail": " | ".join(tail)[:300],
        }
    ]


class Recorder:
    """The CSV, rewritten atomically after every row: a run that is stopped keeps its rows."""

    def __init__(self, out: Path, machine: dict[str, Any]) -> None:
        self.out, self.machine, self.rows, self.t0 = out, machine, [], time.time()

    def add(self, row: dict[str, Any]) -> None:
        from benchmarks._common import write_csv

        self.rows.append(row)
        cols: list[str] = []
        for r in self.rows:
            cols += [c for c in r if c not in cols]
        m = self.machine | {"total_seconds": round(time.time() - self.t0, 1)}
        write_csv(self.out, m, self.rows, cols)


def _preflight() -> str | None:
    """One line naming what this Python lacks to run the check, or None."""
    if sys.version_info < (3, 11):  # noqa: UP036 (any Python may be given)
        return f"gpu_check: {sys.executable} is Python {sys.version.split()[0]}; 3.11+ needed"
    missing = missing_requirements()
    if missing:
        return (
            f"gpu_check: {sys.executable} lacks {', '.join(missing)} (pyproject.toml "
            "dependencies); install them first, e.g. from wheels: pip install --no-index "
            "--find-links <wheel folder> " + " ".join(missing)
        )
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry", action="store_true", help="CPU, tiny sizes, workflow plan only")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--methods", default="", help="comma-separated plugins (default: all)")
    p.add_argument("--batch", type=int, default=4, help="batch of the paper-size steps")
    p.add_argument("--skip", default="", help="checks to skip: step,concurrent,workflow")
    p.add_argument(
        "--budget", type=float, default=1e9, help="seconds: start no check after it, stop jobs"
    )
    args = p.parse_args(argv)
    problem = _preflight()
    if problem:
        print(problem, file=sys.stderr)
        return MISSING_STATUS
    skip = {s for s in args.skip.split(",") if s}
    if not args.dry:
        import torch

        if not torch.cuda.is_available():
            p.error("no CUDA device: run with --dry on a machine without a GPU")
    from benchmarks._common import machine

    deadline = time.monotonic() + args.budget
    rec = Recorder(args.out, machine() | {"dry": args.dry})
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        if "step" not in skip:
            methods = [m for m in args.methods.split(",") if m]
            for row in step_rows(args.dry, methods, 1 if args.dry else args.batch):
                rec.add(row)
                if time.monotonic() > deadline:
                    break
        for check, fn in (("concurrent", concurrent_rows), ("workflow", workflow_rows)):
            left = deadline - time.monotonic()
            if check in skip:
                continue
            if left <= 0:
                rec.add({"check": check, "ok": False, "detail": "not run: time budget spent"})
                continue
            for row in fn(args.dry, work, left):
                rec.add(row)
    failed = [r for r in rec.rows if not r.get("ok")]
    print(f"wrote {args.out}: {len(rec.rows)} rows, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
