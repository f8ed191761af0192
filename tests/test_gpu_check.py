"""The GPU proof script runs end to end on the CPU in its dry mode and writes one CSV."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_mode_writes_every_check(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.csv"
    res = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry", "--methods", "cyclegan"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=480,
        # the script calls `python` and `snakemake`: this environment's, as when activated
        env={
            **os.environ,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        },
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    with out.open() as f:
        rows = list(csv.DictReader(f))
    checks = [r["check"] for r in rows]
    assert checks == ["step"] * 3 + ["concurrent", "concurrent", "workflow"]
    steps = [(r["precision"], r["memory_format"]) for r in rows if r["check"] == "step"]
    assert steps == [("fp32", "contiguous"), ("bf16", "contiguous"), ("bf16", "channels_last")]
    assert all(float(r["gflop_per_step"]) > 0 for r in rows if r["check"] == "step")
    assert all(r["ok"] == "True" for r in rows)
    assert {r["overlapped"] for r in rows if r["check"] == "concurrent"} == {"True"}


def test_gpu_check_refuses_without_gpu_unless_dry() -> None:
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the script would run for real")
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0 and "--dry" in res.stderr
