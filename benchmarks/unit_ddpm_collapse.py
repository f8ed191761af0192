"""Does UNIT-DDPM learn at the demo's size, or do its translators collapse? A learning curve.

UNIT-DDPM at its ``config/demo.yaml`` parameters and training overrides (batch 4) is trained
through the shared trainer on a demo-like phantom slice store for each of ``--steps``,
validating six times, beside the identity map on the same store (the floor to beat). Every
validation row becomes a row of ``benchmarks/results/unit_ddpm_collapse.csv``: PSNR per
direction and SSIM of the sampled translations (the trainer's protocol), and the collapse check
of the translators: their PSNR against their own input and against the target, and the spread
of their output against the target's (``spread_translator_vs_target``, about 1 for a healthy
translator, near 0 for a near-constant one); the last row of each run says what Table 1's
collapse check makes of it (``collapse_check``; ``none`` where it does not fire).

    python benchmarks/unit_ddpm_collapse.py --steps 300,1200 [--store STORE] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import write_table  # noqa: E402
from demo_capacity import phantom_store  # noqa: E402
from demo_learning_curve import demo_spec  # noqa: E402

import mrbench  # noqa: E402, F401  (maps mrbench_methods to methods/ in a checkout)

KEEP = (
    "step",
    "psnr_t1_to_t2",
    "psnr_t2_to_t1",
    "psnr",
    "ssim",
    "psnr_translator_vs_input",
    "psnr_translator_vs_target",
    "spread_translator_vs_target",
    "spread_translator_vs_target_t1_to_t2",
    "spread_translator_vs_target_t2_to_t1",
)


def curve(steps: int, store: Path, out: Path, method: str = "unit_ddpm") -> list[dict]:
    """Train ``method`` at its demo parameters for ``steps`` steps; its validation rows, the last
    with what Table 1's collapse check says of the run (``none``: it does not fire)."""
    import pandas as pd

    from mrbench.reporting.train_logs import translator_collapse
    from mrbench.training.loop import train

    spec = demo_spec(method, steps)
    t0 = time.perf_counter()
    train(spec, store, out, seed=0, progress=False, log=lambda m: None)
    wall = time.perf_counter() - t0
    with (out / "val_log.csv").open() as f:
        rows = [{k: r.get(k, "") for k in KEEP} for r in csv.DictReader(f)]
    rows = [{"method": method, "steps": steps, **r, "run_seconds": round(wall, 1)} for r in rows]
    rows[-1]["collapse_check"] = translator_collapse(pd.read_csv(out / "val_log.csv")) or "none"
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", default="300", help="run lengths, comma-separated")
    p.add_argument("--store", type=Path, default=None, help="slice store (train/ val/)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (a demo job: 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or phantom_store(Path(tmp) / "store", 32, 5.5, 10)
        rows += curve(0, store, Path(tmp) / "identity", "identity")  # the floor to beat
        for n in (int(s) for s in args.steps.split(",") if s):
            rows += curve(n, store, Path(tmp) / f"run-{n}")
    write_table(
        "unit_ddpm_collapse",
        rows,
        "UNIT-DDPM at the demo's size: validation PSNR (dB), SSIM and the translators' collapse "
        "check",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
