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

import functools
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mrbench.config.evaluation import TABLE_ROLE_KEYS, evaluation_settings

#: provenance: the packages whose versions are recorded with every number
PROVENANCE_PACKAGES = ("numpy", "scikit-image", "scipy", "torch", "nibabel", "torch-fidelity")

ROOT = Path(__file__).resolve().parents[2]


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
def pair_key(direction: str) -> str:
    """The tidy table's ``pair`` of a direction: its two contrasts in the order of
    :data:`mrbench.domain.CONTRASTS`, joined by ``/`` (``flair_to_t2`` -> ``t2/flair``), so both
    directions of a pair share it whichever contrast the config names first."""
    from mrbench.pairs import contrasts_of, parse_direction

    return "/".join(contrasts_of([parse_direction(direction)]))


#: columns of the tidy results table. ``direction`` (``<source>_to_<target>``) names the
#: translation; ``source`` and ``target`` are its contrasts and ``pair`` the two contrasts in the
#: order of :data:`mrbench.domain.CONTRASTS` joined by ``/`` (``t1/t2``, ``t2/flair``): the same
#: for both directions of a pair whichever contrast the config names first. All three follow
#: from ``direction`` (:func:`with_pair_columns` adds them to files written without them).
TIDY_COLUMNS = [
    "dataset",
    "method",
    "label",
    "seed",
    "direction",
    "pair",
    "source",
    "target",
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
    from mrbench.evaluation.metrics import get_protocol, unit_of
    from mrbench.io import InputError
    from mrbench.pairs import parse_direction
    from mrbench.slices import SliceStore

    try:
        source_mod, target_mod = parse_direction(direction)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    # tissue labels, where the store has them, give the lesion / healthy-tissue values; the
    # store must hold both contrasts of the direction (its pair: source = a, target = b)
    store = SliceStore(
        store_dir,
        labels=(Path(store_dir) / "label.npy").exists(),
        pair=(source_mod, target_mod),
    )
    protos = [get_protocol(p) for p in protocols]
    records: list[tuple] = []
    for subject in store.subjects:
        records += _subject_records(pred_dir, store, subject, target_mod, protos)
    version, packages = code_version(), package_versions()
    df = pd.DataFrame(
        [
            {
                "dataset": dataset,
                "method": method,
                "label": label or method,
                "seed": int(seed),
                "direction": direction,
                "pair": pair_key(direction),
                "source": source_mod,
                "target": target_mod,
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


def _subject_records(
    pred_dir: str | Path, store: Any, subject: str, target_mod: str, protos: list
) -> list[tuple]:
    """``(subject, slice, protocol, metric, value)`` records of one test subject.

    Kept apart from :func:`evaluate_predictions` so the per-subject metric computation (2D:
    all slices at once; 3D: the slice stack as one volume, slice -1) reads as one step.
    """
    from mrbench.evaluation.metrics import compute_batch
    from mrbench.evaluation.regions import presence, without_region

    rows = store.subject_rows(subject)
    zs = store.index.set_index("row").loc[rows, "slice"].to_numpy()
    preds = prediction_windows(pred_dir, store, subject)
    targets = np.asarray(store.arrays[target_mod][rows], dtype=np.float32)
    masks = np.asarray(store.arrays["mask"][rows]) > 0
    labels = np.asarray(store.arrays["label"][rows]) if store.labels else None
    records: list[tuple] = []
    for proto in protos:
        if proto.dims == 3:  # the subject's slice stack as one volume (slice -1)
            batch = [None if a is None else a[None] for a in (preds, targets, masks, labels)]
            res, ids = compute_batch(proto.name, *batch), [-1]
            where = presence(batch[2], batch[3])
        else:  # all slices at once
            res, ids = compute_batch(proto.name, preds, targets, masks, labels), zs
            where = presence(masks, labels)
        records += [
            (subject, int(z), proto, k, float(v[i])) for i, z in enumerate(ids)
            for k, v in res.items() if not without_region(k, where, i)
        ]  # fmt: skip
    return records


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
    return with_pair_columns(df)


def with_pair_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the ``pair``, ``source`` and ``target`` columns (see :data:`TIDY_COLUMNS`)
    filled from ``direction`` where absent (metrics files written before pairs existed), placed
    after ``direction``; a direction that names no two contrasts is refused."""
    from mrbench.io import InputError
    from mrbench.pairs import parse_direction

    missing = [c for c in ("pair", "source", "target") if c not in df or df[c].isna().any()]
    if not missing or df.empty:
        return df
    parsed = {}
    for r in dict.fromkeys(df["direction"]):
        try:
            parsed[r] = (pair_key(r), *parse_direction(r))
        except ValueError as exc:
            raise InputError(f"results table: {exc}") from None
    df = df.copy()
    for k, col in enumerate(("pair", "source", "target")):
        derived = df["direction"].map(lambda r, k=k: parsed[r][k])
        df[col] = df[col].fillna(derived) if col in df else derived
    cols = list(df.columns)
    for col in ("target", "source", "pair"):
        cols.remove(col)
        cols.insert(cols.index("direction") + 1, col)
    return df[cols]
