"""``mrbench content-maps``: the content maps of T1w and T2w of one test slice (the DisDiff
paper's Fig. 3)."""

from __future__ import annotations

import argparse

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
    print(f"wrote {args.out} (Pearson r of T1w vs T2w content = {stats['pearson_r']:.3f})")
    return 0
