"""``mrbench download``: fetch one dataset file, resuming and verifying its md5.

The workflow's download rules call this on the login node of a cluster (they are
``localrules``); the output appears only once the checksum matched.
"""

from __future__ import annotations

import argparse

from mrbench.datasets.download import download


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="http(s) URL of the file")
    parser.add_argument("--out", required=True, help="output path (written only when verified)")
    parser.add_argument("--md5", default=None, help="expected md5 hex digest (recommended)")
    parser.add_argument("--retries", type=int, default=5, help="resumed attempts after the first")
    parser.add_argument("--backoff", type=float, default=2.0, help="first back-off wait (s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="socket timeout (s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    path = download(
        args.url,
        args.out,
        args.md5 or None,
        retries=args.retries,
        backoff=args.backoff,
        timeout=args.timeout,
        progress=not args.no_progress,
    )
    print(f"downloaded {path}" + (" (md5 verified)" if args.md5 else " (no md5 given)"))
    return 0
