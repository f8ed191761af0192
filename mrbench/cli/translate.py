"""``mrbench translate``: apply a trained model to a user volume or to a test split.

Two forms::

    mrbench translate --checkpoint model.pt --direction t1_to_t2 \
        --input IN.nii.gz --output OUT.nii.gz
    mrbench translate --checkpoint model.pt --direction t1_to_t2 \
        --store results/data/ixi/slices/test \
        --out-dir results/predictions/ixi/disdiff/seed0/t1_to_t2

``--direction`` is any ``<source>_to_<target>`` of the model's contrast pair (``model.pt``
records it: ``t2_to_flair`` for a T2w/FLAIR model); another pair's direction is refused with one
line naming the model file, its pair and the direction, before anything is written.

The input volume must be preprocessed as the benchmark does (co-registered, intensities
normalised to [0, 1], background 0). An input in another orientation than the model's training
data is reoriented for the model and the prediction put back on the input's grid; another voxel
size, or a ``--mask`` on another grid, is refused with one line (:mod:`mrbench.inference.grid`).

``--out-dir`` appears at once (a temporary sibling, renamed); an existing folder holding files
that no earlier translation wrote is refused (``--overwrite`` replaces it).
"""

from __future__ import annotations

import argparse
import json

from mrbench.cli.args import overwrite_option
from mrbench.cli.metrics import contrast_direction
from mrbench.inference.translate import checkpoint_direction, translate_file, translate_store
from mrbench.io import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="model.pt written by mrbench train")
    parser.add_argument(
        "--direction",
        required=True,
        type=contrast_direction,
        help="<source>_to_<target> of the model's contrast pair (e.g. t1_to_t2, t2_to_flair)",
    )
    single = parser.add_argument_group("one volume")
    single.add_argument("--input", help="preprocessed source volume (NIfTI)")
    single.add_argument("--output", help="translated volume to write (NIfTI)")
    single.add_argument("--mask", help="brain mask of the input (default: its non-zero voxels)")
    split = parser.add_argument_group("a slice-store split")
    split.add_argument(
        "--store", help="slice store split folder, e.g. results/data/ixi/slices/test"
    )
    split.add_argument("--out-dir", help="folder for <subject>.nii.gz and timing.json")
    overwrite_option(split, "--out-dir", "translation")
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (a free GPU, locked for this job, else the CPU), cuda, cpu or cuda:N",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="slices translated at once (default 8)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for stochastic samplers")


def _device(requested: str) -> str:
    """A GPU slot shared fairly between concurrent jobs (see :mod:`mrbench.training.gpu`)."""
    if requested not in ("auto", "cuda"):
        from mrbench.inference.translate import resolve_device

        resolve_device(requested)  # a one-line error for a device this host does not have
        return requested
    from mrbench.training.gpu import acquire_device

    try:
        slot = acquire_device(requested, wait_s=600.0)
    except RuntimeError as exc:
        raise InputError(f"--device {requested}: {exc}") from None
    print(slot.message)
    return "cuda:0" if slot.device == "cuda" else "cpu"


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    # the model's pair decides the directions it translates: refused before any device or output
    checkpoint_direction(args.checkpoint, args.direction)
    args.device = _device(args.device)
    options = {"device": args.device, "batch_size": args.batch_size, "seed": args.seed}
    if args.input or args.output:
        if not (args.input and args.output) or args.store or args.out_dir:
            raise InputError("give --input and --output together (and not --store/--out-dir)")
        out = translate_file(
            args.checkpoint,
            args.direction,
            args.input,
            args.output,
            mask_path=args.mask,
            **options,
        )
        print(out)
        return 0
    if not (args.store and args.out_dir):
        raise InputError("give either --input/--output or --store/--out-dir")
    timing = translate_store(
        args.checkpoint,
        args.store,
        args.direction,
        args.out_dir,
        overwrite=args.overwrite,
        **options,
    )
    print(json.dumps(timing))
    return 0
