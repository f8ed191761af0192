"""The ``mrbench`` command line: one subcommand per module, imported only when used.

Each module named in :data:`COMMANDS` defines ``add_arguments(parser)`` and ``run(args) -> int``.
Errors about bad input (:class:`mrbench.io.InputError`, ``FileNotFoundError``, ``ValueError``
raised for user-facing problems) and storage errors (a full disk, a read-only or foreign folder)
are printed as one line, without a traceback; set ``MRBENCH_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from mrbench import __version__

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "phantom": ("mrbench.cli.phantom", "make the synthetic phantom dataset (NIfTI per subject)"),
    "dataset-subject": (
        "mrbench.cli.dataset",
        "acquire one subject of a dataset through its dataset plugin",
    ),
    "slices": ("mrbench.cli.slices", "build the slice store and subject splits of a dataset"),
    "preprocess": ("mrbench.cli.preprocess", "skull-strip, register and normalise one subject"),
    "download": ("mrbench.cli.download", "download and verify a dataset file"),
    "import-brats": ("mrbench.cli.brats", "import BraTS 2018 from an archive or folder"),
    "import-msd": ("mrbench.cli.msd", "import MSD Task01_BrainTumour (T1w, T2w channels)"),
    "ixi": ("mrbench.cli.ixi", "IXI subject selection/split and per-subject extraction"),
    "train": ("mrbench.cli.train", "train one method on one dataset (resumable)"),
    "translate": ("mrbench.cli.translate", "translate volumes with a trained model"),
    "metrics": ("mrbench.cli.metrics", "PSNR/SSIM/MAE of a prediction under a named protocol"),
    "report": ("mrbench.cli.report", "tables and figures from the tidy results"),
    "content-maps": ("mrbench.cli.content_maps", "content maps of T1w/T2w (paper Fig. 3)"),
}


DESCRIPTION = (
    "mrbench: a reproducible benchmark for unsupervised MRI contrast translation "
    "(T1w <-> T2w). The workflow (snakemake) runs these commands; each can also be run alone."
)
EPILOG = "Run 'mrbench COMMAND --help' for the options of a command."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrbench", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"mrbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # arguments are added lazily in main() so that `mrbench --help` stays fast
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]][0])
        sub = argparse.ArgumentParser(prog=f"mrbench {argv[0]}", description=COMMANDS[argv[0]][1])
        module.add_arguments(sub)
        args = sub.parse_args(argv[1:])
        try:
            return int(module.run(args) or 0)
        except UserFacingErrors as exc:
            if os.environ.get("MRBENCH_DEBUG"):
                raise
            print(f"mrbench {argv[0]}: error: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:  # a full disk, a read-only or foreign folder: the user can act
            if exc.errno not in STORAGE_ERRNOS or os.environ.get("MRBENCH_DEBUG"):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"mrbench {argv[0]}: error: {where}{exc.strerror}", file=sys.stderr)
            return 1
    parser.parse_args(argv)
    return 2


#: errors of the storage rather than of the program: out of space or quota, a read-only file
#: system, no permission (reported in one line naming the file)
STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)


def _user_errors() -> tuple[type[BaseException], ...]:
    from mrbench.io import InputError

    return (InputError, FileNotFoundError, ValueError)


UserFacingErrors = _user_errors()
