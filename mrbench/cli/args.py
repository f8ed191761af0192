"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from mrbench.config.schema import dataset_default
from mrbench.domain import DEFAULT_PAIR


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


def overwrite_option(p: argparse.ArgumentParser, target: str, writer: str) -> None:
    """``--overwrite``: the explicit consent to replace a non-empty output folder that this
    command did not write (without it the command refuses, so a user's files are never lost)."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace an {target} that holds files an earlier {writer} did not write",
    )


def contrasts_option(
    p: argparse.ArgumentParser, choices: Iterable[str], help_text: str, note: str = ""
) -> None:
    """``--contrasts``: the contrasts a command writes, imports or stores (default: the
    paper's pair, so that a command run without it does what it did before pairs existed)."""
    default = " ".join(DEFAULT_PAIR)
    p.add_argument(
        "--contrasts",
        nargs="+",
        choices=list(choices),
        default=list(DEFAULT_PAIR),
        help=f"{help_text} (default: {default}{'; ' + note if note else ''})",
    )
