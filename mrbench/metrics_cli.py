"""``mrbench metrics``: metrics of one predicted volume against its target, printed as JSON.

For checking a single result by hand, or scoring predictions made outside the benchmark under
exactly the protocol the benchmark's tables use.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from mrbench.io import InputError, load_volume
from mrbench.metrics import PROTOCOLS, compute_volume, get_protocol, unit_of


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="predicted volume (NIfTI)")
    parser.add_argument("--target", required=True, help="target volume (NIfTI), same grid")
    parser.add_argument("--mask", help="brain mask (NIfTI), same grid")
    parser.add_argument(
        "--protocol", default="max01", choices=sorted(PROTOCOLS), help="metric protocol"
    )
    parser.add_argument(
        "--per-slice", action="store_true", help="also list the value of every slice"
    )


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


def run(args: argparse.Namespace) -> int:
    proto = get_protocol(args.protocol)
    pred_img = load_volume(args.pred)
    target_img = load_volume(args.target)
    pred = np.asarray(pred_img.dataobj, dtype=np.float64)
    target = np.asarray(target_img.dataobj, dtype=np.float64)
    if pred.shape != target.shape:
        raise InputError(
            f"{args.pred}: shape {pred.shape} differs from the target's {target.shape}"
        )
    mask = None
    if args.mask:
        mask = np.asarray(load_volume(args.mask).dataobj) > 0
        if mask.shape != target.shape:
            raise InputError(
                f"{args.mask}: shape {mask.shape} differs from the target's {target.shape}"
            )
    rows = compute_volume(args.protocol, pred, target, mask)
    result = {
        **proto.as_dict(),
        "description": proto.description,
        "pred": str(args.pred),
        "target": str(args.target),
        "mask_file": str(args.mask) if args.mask else None,
        "metrics": summarise(rows),
    }
    if args.per_slice:
        result["slices"] = [{"slice": z, "metric": k, "value": _json_value(v)} for z, k, v in rows]
    print(json.dumps(result, indent=1))
    return 0
