"""Preprocessing seconds per subject (``mrbench preprocess``) on the real test cases.

Runs the command the workflow's preprocessing rule runs on each case of ``../shared/testdata``
(read-only, never copied into the project) with its output in a temporary folder, and records
the wall time of the whole command (start-up included), the seconds the command reports for
the pipeline itself and for its skull-strip step (``qc.json``), the brain volume and the QC flags:

* ``ixi``: an IXI subject, already skull-stripped, T2 rigidly registered to T1;
* ``skull_on``: a head with skull (T1 1.6 mm): deepbet skull-strip, then registration;
  ``--n4`` adds N4 bias-field correction;
* ``skull_on_thick``: the same head as a clinical 0.9 x 0.9 x 5.5 mm axial T1 (each slice the
  average of its 5.5 mm slab), built in the temporary folder;
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

#: the thick-slice T1, made from the skull-on T1 by :func:`thick_slice_t1`
THICK = "<thick-slice skull_on T1>"


def thick_slice_t1(src: Path, out: Path, inplane: float = 0.9, thickness: float = 5.5) -> Path:
    """A clinical-like axial T1: ``inplane`` mm in plane, each ``thickness`` mm slice the mean
    of the signal over its slab (partial volume, as an acquisition integrates it)."""
    import ants
    import nibabel as nib
    import numpy as np
    from scipy import ndimage

    from mrbench.preprocessing.ants_io import canonical, from_ants, to_ants

    data, aff = canonical(nib.load(str(src)))
    fine = ants.resample_image(to_ants(data, aff), (inplane, inplane, 0.5), False, 0)
    slab = ndimage.uniform_filter1d(fine.numpy(), int(round(thickness / 0.5)), axis=2)
    grid = ants.resample_image(fine, (inplane, inplane, thickness), False, 0)
    thick = ants.resample_image_to_target(fine.new_image_like(slab), grid, interp_type="linear")
    arr, thick_aff = from_ants(thick)
    nib.save(nib.Nifti1Image(arr.astype(np.float32), thick_aff), str(out))
    return out


#: (case, T1, T2, extra arguments)
CASES = [
    (
        "ixi",
        "ixi/IXI002-Guys-0828-T1_brain.nii.gz",
        "ixi/IXI002-Guys-0828-T2_brain.nii.gz",
        ["--skull-stripped"],
    ),
    ("skull_on", "skull_on/subj01_t1.nii.gz", "skull_on/subj01_t2.nii.gz", []),
    ("skull_on_thick", THICK, "skull_on/subj01_t2.nii.gz", []),
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
    quick = ("ixi", "skull_on", "skull_on_thick")
    cases = [c for c in CASES if not args.quick or c[0] in quick]
    mrbench = [sys.executable, "-m", "mrbench.cli", "preprocess"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, t1, t2, extra in cases:
            out = Path(tmp) / name
            if t1 == THICK:
                t1 = thick_slice_t1(TESTDATA / "skull_on/subj01_t1.nii.gz", Path(tmp) / "thick.nii")
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
            qc = json.loads((out / "qc.json").read_text())
            rows.append(
                {
                    "case": name,
                    "threads": args.threads,
                    "wall_s": wall,
                    "pipeline_s": float(report["seconds"]),
                    "skull_strip_s": float(qc["skull_strip"]["seconds"]),
                    "skull_strip_cpu_s": float(qc["skull_strip"]["cpu_seconds"]),
                    # a shared machine's load inflates every time: read the rows with it
                    "load_1min": round(os.getloadavg()[0], 1),
                    "skull_strip": qc["skull_strip"]["method"],
                    "brain_volume_ml": float(qc["brain_volume_ml"]),
                    "qc_flags": len(qc["flags"]),
                    "nmi_header": report["nmi"][0],
                    "nmi_registered": report["nmi"][1],
                }
            )
    write_table("preprocess_time", rows, "Preprocessing seconds per subject (mrbench preprocess)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
