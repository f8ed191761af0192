"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse

from mrbench.config.schema import dataset_default


def dataset_option(
    p: argparse.ArgumentParser, dataset: str, flag: str, type_: type, help_text: str
) -> None:
    """An option defaulting to the dataset kind's config default of the same name
    (``--n-subjects``: ``n_subjects``), its help ending with "(default N)"."""
    key = flag.removeprefix("--").replace("-", "_")
    p.add_argument(
        flag,
        type=type_,
        default=dataset_default(dataset, key),
        help=f"{help_text} (default %(default)s)",
    )
