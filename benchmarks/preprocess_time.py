"""Preprocessing seconds per subject (``mrbench preprocess``) on the real test cases.

Runs the command the workflow's preprocessing rule runs on each case of ``../shared/testdata``
(read-only, never copied into the project) with its output in a temporary folder, and records
the wall time of the whole command (start-up included) and the seconds the command reports for
the pipeline itself:

* ``ixi``: an IXI subject, already skull-stripped, T2 rigidly registered to T1;
* ``skull_on``: a head with skull: template skull-strip (affine + low-resolution SyN), then
  registration; ``--n4`` adds N4 bias-field correction;
* ``brats_like``: a BraTS-layout case (co-registered, skull-stripped).

Multiply by the number of subjects of a dataset (IXI: 577) and divide by the parallel jobs to
plan a full run.

    python benchmarks/preprocess_time.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, write_table  # noqa: E402

TESTDATA = ROOT.parent / "shared" / "testdata"

#: (case, T1, T2, extra arguments)
CASES = [
    (
        "ixi",
        "ixi/IXI002-Guys-0828-T1_brain.nii.gz",
        "ixi/IXI002-Guys-0828-T2_brain.nii.gz",
        ["--skull-stripped"],
    ),
    ("skull_on", "skull_on/subj01_t1.nii.gz", "skull_on/subj01_t2.nii.gz", []),
    ("skull_on+n4", "skull_on/subj01_t1.nii.gz", "skull_on/subj01_t2.nii.gz", ["--n4"]),
    (
        "brats_like",
        "brats_like/case01_t1.nii.gz",
        "brats_like/case01_t2.nii.gz",
        ["--skull-stripped"],
    ),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the N4 and BraTS cases")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    if not TESTDATA.exists():
        print(f"preprocess_time: {TESTDATA} is absent (real test cases live beside the project)")
        return 1
    cases = [c for c in CASES if not args.quick or c[0] in ("ixi", "skull_on")]
    mrbench = [sys.executable, "-m", "mrbench.cli", "preprocess"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, t1, t2, extra in cases:
            out = Path(tmp) / name
            cmd = [
                *mrbench,
                "--t1",
                str(TESTDATA / t1),
                "--t2",
                str(TESTDATA / t2),
                "--out",
                str(out),
                "--subject",
                name.split("+")[0],
                "--threads",
                str(args.threads),
                *extra,
            ]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                print(f"{name}: mrbench preprocess failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                return 1
            report = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(
                {
                    "case": name,
                    "threads": args.threads,
                    "wall_s": wall,
                    "pipeline_s": float(report["seconds"]),
                    "nmi_header": report["nmi"][0],
                    "nmi_registered": report["nmi"][1],
                }
            )
    write_table("preprocess_time", rows, "Preprocessing seconds per subject (mrbench preprocess)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
