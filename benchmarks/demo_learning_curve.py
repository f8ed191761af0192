"""How far do the demo's networks get with more steps? Validation curves of unpaired training.

Each method of ``config/demo.yaml`` (its demo parameters and training overrides, batch 4) is
trained through the shared trainer on a phantom slice store for ``--steps`` steps, validating six
times; every validation row (PSNR and SSIM per direction, the trainer's protocol) becomes a row
of ``benchmarks/results/demo_learning_curve.csv``. Set ``--steps`` to a multiple of the demo's
300 to see whether a longer budget alone lifts a method towards the intensity map.

``--store`` takes an existing slice store (e.g. a demo run's ``results/data/phantom/slices``);
without it a demo-like store (10 subjects, 32 px) is built in a temporary folder.

    python benchmarks/demo_learning_curve.py --methods cyclegan,syndiff --steps 3000,1200 \
        [--store results/data/phantom/slices] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import ROOT, write_table  # noqa: E402
from demo_capacity import phantom_store  # noqa: E402

import mrbench  # noqa: E402, F401  (maps mrbench_methods to methods/ in a checkout)

VALIDATIONS = 6


def demo_spec(method: str, steps: int) -> dict:
    """``method`` at its ``config/demo.yaml`` parameters and training overrides (batch 4), run
    for ``steps`` steps with :data:`VALIDATIONS` validations and the last weights kept."""
    entry = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["methods"][method]
    every = max(1, steps // VALIDATIONS)
    training = {"batch_size": 4, "select": "last", "steps": steps, "val_every": every}
    training |= {"checkpoint_every": max(1, steps), "log_every": every}
    return {
        "method": method,
        "plugin": entry["plugin"],
        "params": dict(entry.get("params") or {}),
        "training": training | dict(entry.get("training") or {}),
    }


def curve(method: str, steps: int, store: Path, out: Path) -> list[dict]:
    """Train ``method`` at its demo parameters for ``steps`` steps; its validation rows."""
    from mrbench.training.loop import train

    spec = demo_spec(method, steps)
    t0 = time.perf_counter()
    train(spec, store, out, seed=0, progress=False, log=lambda m: None)
    wall = time.perf_counter() - t0
    keep = ("step", "psnr_t1_to_t2", "psnr_t2_to_t1", "psnr", "ssim")
    with (out / "val_log.csv").open() as f:
        rows = [{k: r[k] for k in keep} for r in csv.DictReader(f)]
    return [{"method": method, "steps": steps, **r, "run_seconds": round(wall, 1)} for r in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="cyclegan,syndiff", help="demo methods, comma-separated")
    p.add_argument("--steps", default="3000,1200", help="steps per method (one, or one each)")
    p.add_argument("--store", type=Path, default=None, help="slice store (train/ val/ test/)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (a demo job: 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    steps = [int(s) for s in args.steps.split(",") if s]
    if len(steps) == 1:
        steps *= len(methods)
    if len(steps) != len(methods):
        p.error("--steps: give one value, or one per method")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or phantom_store(Path(tmp) / "store", 32, 5.5, 10)
        for method, n in zip(methods, steps, strict=True):
            rows += curve(method, n, store, Path(tmp) / f"run-{method}")
    write_table(
        "demo_learning_curve",
        rows,
        "Unpaired training of the demo's networks for longer (validation PSNR dB, SSIM 0-1)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
