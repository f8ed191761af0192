"""``mrbench ixi``: IXI subject selection and split, the archive check against the committed
split, per-subject extraction, and the QC table."""

from __future__ import annotations

import argparse

from mrbench.cli.args import dataset_option
from mrbench.datasets.ixi import check_archives, extract_subject, make_split, qc_table
from mrbench.io import atomic_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("split", help="select the subjects and write the split file")
    p.add_argument("--t1-tar", required=True, help="IXI-T1.tar (only its file list is read)")
    p.add_argument("--t2-tar", required=True, help="IXI-T2.tar (only its file list is read)")
    p.add_argument("--out", default="config/splits/ixi.tsv", help="split file to write")
    p.add_argument("--excluded", default=None, help="TSV of excluded subjects and reasons")
    dataset_option(p, "ixi", "--n-subjects", int, "subjects taken")
    dataset_option(p, "ixi", "--n-test", int, "test subjects")
    share = "share of the training subjects used for validation"
    dataset_option(p, "ixi", "--val-fraction", float, share)
    c = sub.add_parser("check", help="check the archives against the committed split")
    c.add_argument("--t1-tar", required=True, help="IXI-T1.tar (only its file list is read)")
    c.add_argument("--t2-tar", required=True, help="IXI-T2.tar (only its file list is read)")
    c.add_argument(
        "--pd-tar", default=None, help="IXI-PD.tar, where a pair needs PD (file list read)"
    )
    c.add_argument("--split", default="config/splits/ixi.tsv", help="split file (read only)")
    c.add_argument("--out", required=True, help="record of the check (written when it passes)")
    e = sub.add_parser("extract", help="extract one subject's T1, T2 and/or PD")
    e.add_argument("--t1-tar", default=None, help="IXI-T1.tar")
    e.add_argument("--t2-tar", default=None, help="IXI-T2.tar")
    e.add_argument("--pd-tar", default=None, help="IXI-PD.tar")
    e.add_argument("--subject", required=True, help="subject id, e.g. IXI002-Guys-0828")
    e.add_argument("--out", required=True, help="folder for {t1,t2,pd}.nii.gz (those given)")
    q = sub.add_parser("qc", help="table of the subjects' qc.json with flags")
    q.add_argument("--out", required=True, help="QC table (TSV) to write")
    q.add_argument("qc_files", nargs="+", help="qc.json of every subject")


def run(args: argparse.Namespace) -> int:
    if args.action == "split":
        make_split(
            args.t1_tar,
            args.t2_tar,
            args.out,
            args.excluded,
            args.n_subjects,
            args.n_test,
            args.val_fraction,
        )
    elif args.action == "check":
        subjects = check_archives(args.t1_tar, args.t2_tar, args.split, args.pd_tar)
        with atomic_path(args.out) as tmp:
            tmp.write_text("".join(f"{s}\n" for s in subjects))
    elif args.action == "qc":
        qc_table(args.qc_files, args.out)
    else:
        got = extract_subject(args.t1_tar, args.t2_tar, args.subject, args.out, args.pd_tar)
        print(f"extracted {args.subject}: {', '.join(str(p) for p in got.values())}")
    return 0
