"""``mrbench preprocess``: skull-strip (deepbet), register and normalise one subject (T1w + T2w,
and a PD-weighted volume of the T2's acquisition, moved by the T2's transform).

The workflow's per-subject rules run exactly this command, so a subject that failed in the DAG
can be rerun and inspected by hand. See :mod:`mrbench.preprocessing.pipeline` for the method.
"""

from __future__ import annotations

import argparse
import json

from mrbench.cli.args import contrasts_option
from mrbench.pairs import contrasts_of
from mrbench.preprocessing.params import PreprocessParams
from mrbench.preprocessing.pipeline import PREPROCESS_CONTRASTS, preprocess_subject


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--t1", required=True, help="T1-weighted NIfTI volume")
    parser.add_argument("--t2", required=True, help="T2-weighted NIfTI volume")
    parser.add_argument(
        "--pd",
        default=None,
        help="PD-weighted NIfTI volume of the T2's acquisition (IXI-PD): moved by the T2's "
        "transform, not registered itself",
    )
    contrasts_option(
        parser, PREPROCESS_CONTRASTS, "contrasts to write as <contrast>.nii.gz", "pd needs --pd"
    )
    parser.add_argument("--out", required=True, help="subject output folder")
    parser.add_argument("--subject", default=None, help="subject id (default: folder name)")
    parser.add_argument(
        "--skull-stripped",
        action="store_true",
        help="inputs are already skull-stripped: the mask is the non-zero T1",
    )
    parser.add_argument(
        "--registration",
        choices=("rigid", "affine"),
        default="rigid",
        help="T2w to T1w registration (default rigid)",
    )
    parser.add_argument("--n4", action="store_true", help="N4 bias-field correction")
    parser.add_argument(
        "--target-spacing", type=float, default=None, help="isotropic output spacing (mm)"
    )
    parser.add_argument("--threads", type=int, default=None, help="ITK threads")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        import os

        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)
    params = PreprocessParams(
        skull_stripped=args.skull_stripped,
        registration=args.registration,
        n4=args.n4,
        target_spacing=args.target_spacing,
    )
    others = {"pd": args.pd} if args.pd else {}
    contrasts = contrasts_of([args.contrasts])
    qc = preprocess_subject(
        args.t1, args.t2, args.out, params, args.subject, others=others, contrasts=contrasts
    )
    sim = qc["similarity"]
    print(
        json.dumps(
            {
                "subject": qc["subject"],
                "seconds": qc["seconds"],
                "brain_volume_ml": qc["brain_volume_ml"],
                "mask_volume_ml": qc["mask_volume_ml"],
                "nmi": [sim["nmi_header"], sim["nmi_registered"]],
                "gradient_ncc": [sim["gradient_ncc_header"], sim["gradient_ncc_registered"]],
            }
        )
    )
    return 0
