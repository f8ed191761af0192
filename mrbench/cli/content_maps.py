"""``mrbench content-maps``: the content maps of one test slice's two contrasts (the DisDiff
paper's Fig. 3; the pair the model was trained on, T1w and T2w for the paper's)."""

from __future__ import annotations

import argparse

from mrbench.domain import CONTRASTS
from mrbench.evaluation.content_maps import plot_content_maps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="model.pt of a method with the content_maps capability"
    )
    parser.add_argument("--store", required=True, help="slice store split (e.g. .../slices/test)")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--subject", default=None, help="subject id (default: the first)")
    parser.add_argument("--slice", type=int, default=None, help="axial index (default: middle)")
    parser.add_argument("--channels", type=int, default=4, help="content channels to show")


def run(args: argparse.Namespace) -> int:
    stats = plot_content_maps(
        args.model, args.store, args.out, args.subject, args.slice, args.channels
    )
    names = " vs ".join(CONTRASTS[c] for c in stats["pair"])
    print(f"wrote {args.out} (Pearson r of {names} content = {stats['pearson_r']:.3f})")
    return 0
