"""``mrbench metrics``: metrics of predictions under named protocols.

Two forms::

    mrbench metrics --pred P.nii.gz --target T.nii.gz [--mask M.nii.gz] --protocol max01
    mrbench metrics --pred-dir results/predictions/ixi/disdiff/seed0/t1_to_t2 \
        --store results/data/ixi/slices/test --direction t1_to_t2 \
        --dataset ixi --method disdiff --seed 0 --out results/metrics/ixi/disdiff/seed0/t1_to_t2.csv

The first checks one result by hand, or scores predictions made outside the benchmark under
exactly the protocol of the benchmark's tables, and prints JSON. The second writes the metrics
file of one test split (one row per subject x slice x metric x protocol, with provenance),
against the target contrast of ``--direction``: any ``<source>_to_<target>`` whose contrasts
the store holds (``t2_to_flair`` scores against the store's FLAIR slices).
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from mrbench.evaluation.grids import onto_grid
from mrbench.evaluation.metrics import PROTOCOLS, compute_volume, get_protocol, unit_of
from mrbench.io import InputError, load_volume
from mrbench.pairs import parse_direction


def contrast_direction(value: str) -> str:
    """argparse type of ``--direction``: any ``<source>_to_<target>`` of two known contrasts
    (``t1_to_t2``, ``t2_to_flair``); the slice store then must hold both."""
    try:
        parse_direction(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    one = parser.add_argument_group("one volume (prints JSON)")
    one.add_argument("--pred", help="predicted volume (NIfTI)")
    one.add_argument("--target", help="target volume (NIfTI)")
    one.add_argument(
        "--mask", help="brain mask (NIfTI); prediction and mask must be on the target's grid"
    )
    one.add_argument(
        "--labels",
        help="tissue class map (NIfTI, label 4 = lesion/tumour): adds the _lesion and _healthy "
        "values of the protocols with regions",
    )
    one.add_argument(
        "--protocol", default="max01", choices=sorted(PROTOCOLS), help="metric protocol"
    )
    one.add_argument("--per-slice", action="store_true", help="also list every slice's value")
    split = parser.add_argument_group("a translated test split (writes a CSV)")
    split.add_argument("--pred-dir", help="folder of <subject>.nii.gz written by mrbench translate")
    split.add_argument("--store", help="slice-store split the predictions were made from")
    split.add_argument(
        "--direction",
        type=contrast_direction,
        help="translation direction <source>_to_<target> (e.g. t1_to_t2, t2_to_flair)",
    )
    split.add_argument("--protocols", nargs="+", default=None, help="default: all protocols")
    split.add_argument("--dataset", default="", help="dataset name written with the metrics")
    split.add_argument("--method", default="", help="method name written with the metrics")
    split.add_argument("--label", default=None, help="method name shown in tables")
    split.add_argument("--seed", type=int, default=0, help="seed written with the metrics")
    split.add_argument("--config-hash", default="", help="provenance: hash of the config")
    split.add_argument("--out", help="metrics CSV to write")


def _json_value(v: float) -> float | str:
    # JSON has no infinity or NaN: spell them out
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if math.isnan(v):
        return "nan"
    return v


def summarise(rows: list[tuple[int, str, float]]) -> dict[str, dict]:
    """Mean over slices of each metric, finite values only, with the counts excluded."""
    out: dict[str, dict] = {}
    for metric in dict.fromkeys(r[1] for r in rows):
        vals = np.array([r[2] for r in rows if r[1] == metric], dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        mean = (
            float(finite.mean())
            if finite.size
            else (math.inf if np.isinf(vals).any() else math.nan)
        )
        out[metric] = {
            "mean": _json_value(mean),
            "unit": unit_of(metric),
            "n": int(vals.size),
            "n_infinite": int(np.isinf(vals).sum()),
            "n_nan": int(np.isnan(vals).sum()),
        }
    return out


def run_split(args: argparse.Namespace) -> int:
    from mrbench.evaluation.scoring import evaluate_predictions
    from mrbench.io import write_csv

    if not (args.store and args.direction and args.out):
        raise InputError("--pred-dir needs --store, --direction and --out")
    protocols = args.protocols or list(PROTOCOLS)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise InputError(
            f"--protocols: unknown protocol {unknown[0]!r}; known: {', '.join(PROTOCOLS)}"
        )
    df = evaluate_predictions(
        args.pred_dir,
        args.store,
        args.direction,
        protocols,
        dataset=args.dataset,
        method=args.method,
        seed=args.seed,
        label=args.label,
        config_hash=args.config_hash,
    )
    write_csv(df, args.out)
    print(f"{args.out}: {len(df)} rows")
    return 0


#: prediction and target whose typical brain intensities differ by more than this factor are on
#: different scales (0-1 against 0-255 or x1000): max01 and volume3d divide both by the target's
#: maximum, so the numbers would be meaningless
SCALE_FACTOR = 20.0


def check_same_scale(
    pred: np.ndarray, target: np.ndarray, pred_path: str, target_path: str
) -> None:
    """Refuse a prediction and a target on different intensity scales (the 99th percentile of
    each volume's non-zero voxels), which a protocol dividing both by the target's maximum
    (max01, volume3d) would score as a plausible-looking but meaningless number."""
    levels = []
    for vol in (pred, target):
        nonzero = np.abs(vol[vol != 0])
        levels.append(float(np.percentile(nonzero, 99)) if nonzero.size else 0.0)
    p, t = levels
    if p > 0 and t > 0 and max(p / t, t / p) > SCALE_FACTOR:
        raise InputError(
            f"{target_path}: intensities reach {t:.4g} where the prediction {pred_path} reaches "
            f"{p:.4g} (99th percentiles): different scales (0-1, 0-255, x1000?); put both on "
            "one scale"
        )


def run(args: argparse.Namespace) -> int:
    if args.pred_dir:
        return run_split(args)
    if not (args.pred and args.target):
        raise InputError("give --pred and --target (one volume) or --pred-dir (a test split)")
    proto = get_protocol(args.protocol)
    pred_img = load_volume(args.pred)
    target_img = load_volume(args.target)
    target = np.asarray(target_img.dataobj, dtype=np.float64)
    # shapes and affines compared (tolerance: mrbench.evaluation.grids.AFFINE_TOL_MM), reoriented
    # if needed
    pred = onto_grid(
        np.asarray(pred_img.dataobj, dtype=np.float64),
        pred_img.affine,
        target.shape,
        target_img.affine,
        args.pred,
        args.target,
    )
    if proto.normalisation.startswith("both"):  # one scale for both: a mismatch counts
        check_same_scale(pred, target, args.pred, args.target)
    mask = None
    if args.mask:
        mask_img = load_volume(args.mask)
        mask = onto_grid(
            np.asarray(mask_img.dataobj) > 0,
            mask_img.affine,
            target.shape,
            target_img.affine,
            args.mask,
            args.target,
        )
    labels = None
    if args.labels:
        lab_img = load_volume(args.labels)
        lab = np.rint(np.asarray(lab_img.dataobj)).astype(np.int16)
        labels = onto_grid(
            lab, lab_img.affine, target.shape, target_img.affine, args.labels, args.target
        )
    rows = compute_volume(args.protocol, pred, target, mask, labels)
    result = {
        **proto.as_dict(),
        "description": proto.description,
        "pred": str(args.pred),
        "target": str(args.target),
        "mask_file": str(args.mask) if args.mask else None,
        "labels_file": str(args.labels) if args.labels else None,
        "metrics": summarise(rows),
    }
    if args.per_slice:
        result["slices"] = [{"slice": z, "metric": k, "value": _json_value(v)} for z, k, v in rows]
    print(json.dumps(result, indent=1))
    return 0
