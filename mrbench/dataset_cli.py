"""``mrbench dataset-subject``: acquire one subject of a dataset through its kind's plugin.

The workflow's generic ``dataset_subject`` rule runs this for every subject of a dataset whose
kind acquires subject by subject (the phantom, and most dataset plugins). Writes
``OUT/{t1,t2,mask}.nii.gz``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mrbench.datasets.kind import VOLUMES, get_dataset_kind
from mrbench.io import InputError
from mrbench.schema import dataset_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="dataset name (its config key)")
    p.add_argument(
        "--settings",
        default="{}",
        help="the dataset's config entry as JSON (schema defaults fill missing keys)",
    )
    p.add_argument("--subject", required=True, help="subject id, as listed by the dataset kind")
    p.add_argument("--out", required=True, type=Path, help="folder for {t1,t2,mask}.nii.gz")
    p.add_argument(
        "--plugin-path",
        action="append",
        default=[],
        metavar="FOLDER",
        help="folder of plugin modules to import first (repeatable; the config's plugin_paths)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        entry = json.loads(args.settings)
    except json.JSONDecodeError as exc:
        raise InputError(f"--settings: not valid JSON ({exc.msg})") from None
    settings = dataset_settings(args.dataset, entry)
    try:
        kind = get_dataset_kind(settings["kind"], args.plugin_path)
    except KeyError as exc:
        raise ValueError(f"datasets.{args.dataset}: {exc.args[0]}") from None
    kind.acquire(args.subject, settings, args.out)
    missing = [m for m in VOLUMES if not (args.out / f"{m}.nii.gz").exists()]
    if missing:
        raise InputError(
            f"dataset kind {kind.name!r}: acquire() did not write {missing} into {args.out}"
        )
    print(f"{args.dataset}/{args.subject}: wrote {', '.join(VOLUMES)} into {args.out}")
    return 0
