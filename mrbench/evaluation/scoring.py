"""Scoring translated test sets: the per-direction metrics files behind the tidy results table.

One metrics file (one per dataset x method x seed x direction; the workflow names it) holds one row
per test subject x slice x metric x protocol. Every row carries what is needed to trace and
recompute it: the protocol's definition (normalisation, data range, mask handling, 2D/3D,
aggregation), a hash of the configuration that produced the model, the code version and the
versions of the packages that computed the numbers. All tables and figures are views of the
concatenation of these files (``results/tables/results_tidy.csv.gz``).

Predictions are read from the per-subject NIfTI volumes written by
:mod:`mrbench.inference.translate` and
cut with the slice store's own crop windows, so they are compared with exactly the target slices
and brain masks the model was tested on.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: the ``evaluation`` section of the config, with its defaults (the Snakefile checks keys
#: against this dict)
EVALUATION_DEFAULTS: dict[str, Any] = {
    # metric protocols written to the metrics files (see mrbench.evaluation.metrics)
    "protocols": ["max01", "icon_mean", "syndiff", "volume3d"],
    # protocol and metric names shown in Table 1, Table 2 and the paper comparison
    "table_protocol": "max01",
    "table_psnr": "psnr",
    "table_ssim": "ssim",
    # the methods' roles (config names; see mrbench.config.roster for the defaults when null):
    # Table 1 rows, ablation (Table 2) rows, row order of every method table, the method tested
    # against every other one for significance, and the pair whose convergence is compared
    "table1_methods": None,
    "ablation_methods": None,
    "method_order": None,
    "reference_method": None,
    "efficiency_pair": None,
    # significance level
    "alpha": 0.05,
    # FID / KID with torch-fidelity on the test slices; feature_extractor "inception-v3-compat"
    # (the usual FID network; weights from weights_path or the torch hub cache) or
    # "mrbench-randconv" (an offline random-feature extractor whose numbers are NOT FID/KID as
    # published, labelled as such in the tables)
    "fid": {
        "enabled": True,
        "feature_extractor": "inception-v3-compat",
        "weights_path": None,
        "kid_subset_size": 1000,
    },
    # efficiency table: the validation PSNR whose first crossing is timed (null: the highest PSNR
    # both methods of efficiency_pair reached - the paper's convergence comparison - or, without
    # a pair, every trained method)
    "threshold_psnr": None,
    # qualitative figure: subject (null: first test subject) and slice (null: the middle one)
    "qualitative": {"subject": None, "slice": None},
    # translation of the test sets
    "batch_size": 8,
    "device": "auto",
}

#: evaluation keys that only arrange the tables (which methods, in which order, against whom):
#: they shape no number of a metrics file, so they stay out of its config hash
TABLE_ROLE_KEYS = (
    "table1_methods",
    "ablation_methods",
    "method_order",
    "reference_method",
    "efficiency_pair",
)

#: provenance: the packages whose versions are recorded with every number
PROVENANCE_PACKAGES = ("numpy", "scikit-image", "scipy", "torch", "nibabel", "torch-fidelity")

ROOT = Path(__file__).resolve().parents[2]


def evaluation_settings(config: dict) -> dict[str, Any]:
    """The config's ``evaluation`` section over :data:`EVALUATION_DEFAULTS` (nested dicts
    merged); unknown keys or protocols raise ``ValueError`` naming the key."""
    out = copy.deepcopy(EVALUATION_DEFAULTS)
    for key, value in (config.get("evaluation") or {}).items():
        if key not in EVALUATION_DEFAULTS:
            raise ValueError(
                f"config key evaluation.{key}: unknown; known: {', '.join(EVALUATION_DEFAULTS)}"
            )
        if isinstance(out[key], dict) and isinstance(value, dict):
            unknown = sorted(set(value) - set(out[key]))
            if unknown:
                raise ValueError(
                    f"config key evaluation.{key}.{unknown[0]}: unknown; "
                    f"known: {', '.join(out[key])}"
                )
            out[key].update(value)
        else:
            out[key] = value
    from mrbench.evaluation.metrics import PROTOCOLS

    for proto in out["protocols"]:
        if proto not in PROTOCOLS:
            raise ValueError(
                f"config key evaluation.protocols: unknown protocol {proto!r}; "
                f"known: {', '.join(PROTOCOLS)}"
            )
    if out["table_protocol"] not in out["protocols"]:
        raise ValueError(
            f"config key evaluation.table_protocol: {out['table_protocol']!r} is not among "
            "evaluation.protocols"
        )
    return out


# ------------------------------------------------------------------ provenance
@functools.cache
def code_version() -> str:
    """``git describe`` of the project, or the package version outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        if out:
            return f"git:{out}"
    except (OSError, subprocess.SubprocessError):
        pass
    from mrbench import __version__

    return f"mrbench {__version__}"


@functools.cache
def package_versions() -> str:
    parts = []
    for name in PROVENANCE_PACKAGES:
        try:
            parts.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name}=absent")
    return ";".join(parts)


def config_hash(config: dict, dataset: str, method: str) -> str:
    """Short hash of everything in the config that shapes one model's results: the dataset's
    settings, the resolved method entry (plugin, params, training), seeds-independent, and the
    evaluation section (without :data:`TABLE_ROLE_KEYS`)."""
    from mrbench.config.resolve import method_spec_dict

    evaluation = {k: v for k, v in evaluation_settings(config).items() if k not in TABLE_ROLE_KEYS}
    payload = {
        "dataset": {dataset: config["datasets"][dataset]},
        "method": method_spec_dict(config, method),
        "evaluation": evaluation,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ------------------------------------------------------------------ evaluation
TIDY_COLUMNS = [
    "dataset",
    "method",
    "label",
    "seed",
    "direction",
    "subject",
    "slice",
    "protocol",
    "metric",
    "value",
    "unit",
    "normalisation",
    "data_range",
    "mask",
    "dims",
    "aggregation",
    "config_hash",
    "code_version",
    "packages",
]


def _read_prediction(
    path: Path, shape: tuple[int, ...], affine: np.ndarray | None = None, ref: str = ""
) -> np.ndarray:
    """A prediction volume on the test volume's grid: shape and affine compared (reoriented when
    it is the same grid in another orientation, see :mod:`mrbench.evaluation.grids`)."""
    import nibabel as nib

    from mrbench.evaluation.grids import onto_grid
    from mrbench.io import InputError

    if not path.exists():
        raise InputError(f"{path}: prediction volume missing")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise InputError(f"{path}: cannot read NIfTI volume ({exc})") from None
    if affine is not None:
        data = onto_grid(data, img.affine, shape, affine, path, ref)
    elif data.shape != shape:
        raise InputError(f"{path}: shape {data.shape} differs from the test volume's {shape}")
    if not np.isfinite(data).all():
        raise InputError(f"{path}: prediction contains NaN or infinite values")
    return data


def prediction_windows(pred_dir: str | Path, store: Any, subject: str) -> np.ndarray:
    """A subject's predicted slices cut with the store's crop window: ``(n, S, S)``, in the
    order of the store's rows for that subject."""
    from mrbench.slices import crop_pad

    info = store.subject_info(subject)
    rows = store.subject_rows(subject)
    zs = store.index.set_index("row").loc[rows, "slice"].to_numpy()
    volume = _read_prediction(
        Path(pred_dir) / f"{subject}.nii.gz",
        tuple(int(s) for s in info["shape"]),
        np.asarray(info["affine"], dtype=np.float64) if "affine" in info else None,
        f"the test grid of {subject} in {Path(store.folder) / 'meta.json'}",
    )
    return np.stack(
        [crop_pad(volume[..., int(z)], int(info["x0"]), int(info["y0"]), store.size) for z in zs]
    )


def evaluate_predictions(
    pred_dir: str | Path,
    store_dir: str | Path,
    direction: str,
    protocols: list[str],
    *,
    dataset: str,
    method: str,
    seed: int,
    label: str | None = None,
    config_hash: str = "",
) -> pd.DataFrame:
    """Rows of the tidy results table for one prediction folder against the test store."""
    from mrbench.evaluation.metrics import compute, compute_batch, get_protocol, unit_of
    from mrbench.slices import SliceStore

    store = SliceStore(store_dir)
    target_mod = direction.split("_to_")[1]
    protos = [get_protocol(p) for p in protocols]
    records: list[tuple] = []
    for subject in store.subjects:
        rows = store.subject_rows(subject)
        zs = store.index.set_index("row").loc[rows, "slice"].to_numpy()
        preds = prediction_windows(pred_dir, store, subject)
        targets = np.asarray(store.arrays[target_mod][rows], dtype=np.float32)
        masks = np.asarray(store.arrays["mask"][rows]) > 0
        for proto in protos:
            if proto.dims == 3:
                res = compute(
                    proto.name,
                    np.moveaxis(preds, 0, -1),
                    np.moveaxis(targets, 0, -1),
                    np.moveaxis(masks, 0, -1),
                )
                records += [(subject, -1, proto, k, v) for k, v in res.items()]
                continue
            res = compute_batch(proto.name, preds, targets, masks)  # all slices at once
            records += [
                (subject, int(z), proto, k, float(v[i])) for i, z in enumerate(zs)
                for k, v in res.items()
            ]  # fmt: skip
    version, packages = code_version(), package_versions()
    df = pd.DataFrame(
        [
            {
                "dataset": dataset,
                "method": method,
                "label": label or method,
                "seed": int(seed),
                "direction": direction,
                "subject": subject,
                "slice": z,
                "protocol": proto.name,
                "metric": metric,
                "value": value,
                "unit": unit_of(metric),
                "normalisation": proto.normalisation,
                "data_range": proto.data_range,
                "mask": proto.mask,
                "dims": proto.dims,
                "aggregation": proto.aggregation,
                "config_hash": config_hash,
                "code_version": version,
                "packages": packages,
            }
            for subject, z, proto, metric, value in records
        ],
        columns=TIDY_COLUMNS,
    )
    return df


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a CSV atomically (gzip-compressed where the name ends in ``.gz``); ``inf`` is
    written as ``inf`` and read back as a float by pandas."""
    from mrbench.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, compression="gzip" if path.suffix == ".gz" else None)
    return path


def read_tidy(paths: list[str | Path] | str | Path) -> pd.DataFrame:
    """Concatenate metrics files (or read one tidy file) into the tidy results table."""
    from mrbench.io import InputError

    if isinstance(paths, str | Path):
        paths = [paths]
    frames = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputError(f"{p}: results file not found")
        df = pd.read_csv(p, keep_default_na=True)
        missing = [c for c in ("dataset", "method", "direction", "metric", "value") if c not in df]
        if missing:
            raise InputError(f"{p}: not a results table (missing column {missing[0]!r})")
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=TIDY_COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    if "seed" in df:
        df["seed"] = df["seed"].astype(int)
    return df
