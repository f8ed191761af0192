"""The slice store: 2D axial slices of co-registered, normalised subject volumes.

Layout of one split (``results/data/<dataset>/slices/<split>/``)::

    <contrast>.npy   float32 (N, S, S), intensities in [0, 1] (0 = background), one per
                     contrast the dataset needs (t1.npy, t2.npy for the default pair)
    mask.npy         uint8   (N, S, S), the subject's brain mask
    label.npy        uint8   (N, S, S), tissue classes (:data:`TISSUE_CLASSES`), when every
                     subject of the split has ``label.nii.gz``
    index.tsv        row, subject, slice (axial index z in the subject's preprocessed volume)
    meta.json        size, contrasts, crop/pad offsets per subject, normalisation rule

The arrays are plain ``.npy`` files opened with ``mmap_mode="r"``, so a torch ``Dataset`` reads
slices on demand without loading a split into memory, and any tool (numpy, MATLAB via npy
readers) can open them.

Subject volumes come from preprocessing already normalised (see :func:`normalise_volume`), so the
store only selects slices and crops or pads them to ``size`` x ``size`` about the brain's centre.
The offsets are recorded so that predictions can be placed back on the subject's grid.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mrbench.domain import CONTRASTS, DEFAULT_PAIR, TISSUE_CLASSES
from mrbench.io import InputError, load_volume
from mrbench.pairs import Batch, check_pair, contrasts_of

if TYPE_CHECKING:
    import torch

NORMALISATION_RULE = (
    "per volume: divide by the 99.5th percentile of the intensities inside the brain mask, "
    "clip to [0, 1], set voxels outside the mask to 0"
)


def normalise_volume(data: np.ndarray, mask: np.ndarray, percentile: float = 99.5) -> np.ndarray:
    """The benchmark's intensity normalisation (see ``NORMALISATION_RULE``)."""
    inside = data[mask > 0]
    if inside.size == 0:
        raise ValueError("empty brain mask")
    scale = float(np.percentile(inside, percentile))
    if scale <= 0:
        raise ValueError("no positive intensity inside the brain mask")
    out = np.clip(data.astype(np.float32) / scale, 0.0, 1.0)
    out[mask <= 0] = 0.0
    return out


def select_slices(mask: np.ndarray, n: int, min_fraction: float = 0.05) -> np.ndarray:
    """Axial slices (last axis) to keep: the ``n`` contiguous slices with the most brain.

    Slices whose brain area is below ``min_fraction`` of the largest slice's are never kept, so
    a subject with fewer than ``n`` brain slices contributes fewer slices, never empty ones.
    """
    area = mask.reshape(-1, mask.shape[-1]).sum(axis=0).astype(np.float64)
    if area.max() <= 0:
        raise ValueError("empty brain mask")
    ok = np.flatnonzero(area >= min_fraction * area.max())
    lo, hi = ok.min(), ok.max() + 1
    n = min(n, hi - lo)
    window = np.convolve(area[lo:hi], np.ones(n), mode="valid")
    start = lo + int(np.argmax(window))
    return np.arange(start, start + n)


def crop_offsets(mask: np.ndarray, size: int) -> tuple[int, int]:
    """In-plane offsets (x0, y0) of a ``size`` window centred on the brain's bounding box.

    Negative offsets mean padding. The same window is used for every slice of a subject.
    """
    xs = np.flatnonzero(mask.any(axis=(1, 2)))
    ys = np.flatnonzero(mask.any(axis=(0, 2)))
    cx = (xs.min() + xs.max() + 1) // 2
    cy = (ys.min() + ys.max() + 1) // 2
    return int(cx - size // 2), int(cy - size // 2)


def crop_pad(plane: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray:
    """Cut a ``size`` x ``size`` window starting at (x0, y0) from a 2D array, zero-padding."""
    out = np.zeros((size, size), dtype=plane.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + size, plane.shape[0]), min(y0 + size, plane.shape[1])
    if sx1 > sx0 and sy1 > sy0:
        out[sx0 - x0 : sx1 - x0, sy0 - y0 : sy1 - y0] = plane[sx0:sx1, sy0:sy1]
    return out


def uncrop(window: np.ndarray, x0: int, y0: int, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`crop_pad`: place a window back on a ``shape`` plane (zeros elsewhere)."""
    size = window.shape[0]
    out = np.zeros(shape, dtype=window.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + size, shape[0]), min(y0 + size, shape[1])
    if sx1 > sx0 and sy1 > sy0:
        out[sx0:sx1, sy0:sy1] = window[sx0 - x0 : sx1 - x0, sy0 - y0 : sy1 - y0]
    return out


@dataclass(frozen=True)
class SubjectVolumes:
    """Paths of one preprocessed subject: co-registered contrasts (contrast -> path, e.g.
    ``{"t1": ..., "t2": ...}``), brain mask, tissue labels."""

    subject: str
    contrasts: Mapping[str, Path]
    mask: Path
    label: Path | None = None  #: tissue class map (optional; see :data:`TISSUE_CLASSES`)

    @classmethod
    def in_dir(
        cls, subject: str, folder: str | Path, contrasts: Sequence[str] = DEFAULT_PAIR
    ) -> SubjectVolumes:
        """The subject folder's ``<contrast>.nii.gz`` for each of ``contrasts``, mask and label."""
        folder = Path(folder)
        label = folder / "label.nii.gz"
        return cls(
            subject,
            {c: folder / f"{c}.nii.gz" for c in contrasts},
            folder / "mask.nii.gz",
            label if label.exists() else None,
        )

    def path(self, contrast: str) -> Path:
        """The volume of ``contrast``; a one-line error where the subject has none."""
        if contrast not in self.contrasts:
            raise InputError(
                f"subject {self.subject}: no {contrast} volume (it has "
                f"{', '.join(self.contrasts) or 'none'})"
            )
        return Path(self.contrasts[contrast])

    @property
    def t1(self) -> Path:
        return self.path("t1")

    @property
    def t2(self) -> Path:
        return self.path("t2")


def build_split(
    subjects: list[SubjectVolumes],
    out_dir: str | Path,
    size: int,
    slices_per_subject: int,
    contrasts: Sequence[str] = DEFAULT_PAIR,
) -> Path:
    """Write one split of the slice store (atomically: a temporary folder renamed at the end)
    with one ``<contrast>.npy`` per entry of ``contrasts``."""
    out_dir = Path(out_dir)
    if not subjects:
        raise ValueError(f"{out_dir}: no subjects in this split")
    contrasts = _store_contrasts(contrasts, out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_split(subjects, tmp, size, slices_per_subject, contrasts)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def _store_contrasts(contrasts: Sequence[str], out_dir: Path) -> tuple[str, ...]:
    """``contrasts`` checked (known, no repeats, at least one) and in :data:`CONTRASTS` order."""
    contrasts = tuple(contrasts)
    unknown = [c for c in contrasts if c not in CONTRASTS]
    if unknown or not contrasts or len(set(contrasts)) != len(contrasts):
        raise ValueError(
            f"{out_dir}: contrasts {list(contrasts)!r} must be distinct names among "
            f"{', '.join(CONTRASTS)}"
        )
    return contrasts_of([contrasts])


#: slack for float storage of volumes normalised to [0, 1]
RANGE_TOLERANCE = 1e-3


def check_normalised(data: np.ndarray, path: str | Path) -> None:
    """Refuse a subject volume outside [0, 1]: models get ``2 x - 1``, and a plugin output check
    would otherwise blame the method for intensities that came from an unnormalised dataset."""
    lo, hi = float(np.nanmin(data)), float(np.nanmax(data))
    if not (np.isfinite(lo) and np.isfinite(hi)) or not np.isfinite(data).all():
        raise InputError(f"{path}: non-finite intensities; subject volumes must be normalised")
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise InputError(
            f"{path}: intensities in [{lo:.4g}, {hi:.4g}], outside [0, 1]; subject volumes must "
            f"be normalised ({NORMALISATION_RULE}: mrbench.slices.normalise_volume)"
        )


def check_labels(labels: np.ndarray, path: str | Path) -> None:
    """Tissue class maps hold only the class codes of :data:`TISSUE_CLASSES` (0-4): any other
    value would be cast or clamped into a class by the methods that read them, silently."""
    lo_class, hi_class = min(TISSUE_CLASSES), max(TISSUE_CLASSES)
    if np.issubdtype(labels.dtype, np.integer) and labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo >= lo_class and hi <= hi_class:
            return
    values = np.unique(labels)
    bad = values[~np.isin(values, list(TISSUE_CLASSES))]
    if bad.size:
        shown = ", ".join(f"{v:g}" for v in bad[:5])
        names = ", ".join(f"{k} {v}" for k, v in TISSUE_CLASSES.items())
        raise InputError(
            f"{path}: label value(s) {shown} outside the tissue classes "
            f"{lo_class}-{hi_class} ({names})"
        )


def _plan_subject(
    sv: SubjectVolumes,
    size: int,
    slices_per_subject: int,
    contrasts: tuple[str, ...],
    with_labels: bool,
) -> dict:
    """Check one subject's volumes (shapes, normalisation, labels) and choose its slices and
    crop offsets from the mask; return its entry of ``meta.json``'s ``subjects``. Nothing is
    written here, so a bad file fails before the split's arrays are created."""
    mask_img = load_volume(sv.mask)
    mask = np.asarray(mask_img.dataobj) > 0
    for mod in contrasts:
        img = load_volume(sv.path(mod))
        if img.shape != mask.shape:
            raise InputError(
                f"{sv.path(mod)}: shape {img.shape} differs from the mask's {mask.shape}"
            )
        check_normalised(np.asarray(img.dataobj), sv.path(mod))
    if with_labels:
        label = np.asarray(load_volume(sv.label).dataobj)
        if label.shape != mask.shape:
            raise InputError(f"{sv.label}: shape differs from the mask's {mask.shape}")
        check_labels(label, sv.label)
    zs = select_slices(mask, slices_per_subject)
    x0, y0 = crop_offsets(mask[..., zs], size)
    return {
        "subject": sv.subject,
        "slices": zs.tolist(),
        "x0": x0,
        "y0": y0,
        "shape": list(mask.shape),
        "affine": mask_img.affine.tolist(),
    }


def _write_split(
    subjects: list[SubjectVolumes],
    tmp: Path,
    size: int,
    slices_per_subject: int,
    contrasts: tuple[str, ...],
) -> None:
    with_labels = all(sv.label is not None for sv in subjects)
    # first pass: check every volume (so a bad file fails before anything is written) and
    # choose slices and offsets from the mask
    per_subject = [
        _plan_subject(sv, size, slices_per_subject, contrasts, with_labels) for sv in subjects
    ]
    n = int(sum(len(info["slices"]) for info in per_subject))
    arrays = {
        mod: np.lib.format.open_memmap(tmp / f"{mod}.npy", "w+", np.float32, (n, size, size))
        for mod in contrasts
    }
    arrays["mask"] = np.lib.format.open_memmap(tmp / "mask.npy", "w+", np.uint8, (n, size, size))
    if with_labels:
        arrays["label"] = np.lib.format.open_memmap(
            tmp / "label.npy", "w+", np.uint8, (n, size, size)
        )
    rows = []
    i = 0
    for sv, info in zip(subjects, per_subject, strict=True):
        mask = np.asarray(load_volume(sv.mask).dataobj) > 0
        vols = {m: np.asarray(load_volume(sv.path(m)).dataobj) for m in contrasts}
        labels = np.asarray(load_volume(sv.label).dataobj).astype(np.uint8) if with_labels else None
        for z in info["slices"]:
            for mod in contrasts:
                arrays[mod][i] = crop_pad(vols[mod][..., z], info["x0"], info["y0"], size)
            arrays["mask"][i] = crop_pad(
                mask[..., z].astype(np.uint8), info["x0"], info["y0"], size
            )
            if labels is not None:
                arrays["label"][i] = crop_pad(labels[..., z], info["x0"], info["y0"], size)
            rows.append((i, sv.subject, z))
            i += 1
    for arr in arrays.values():
        arr.flush()
    del arrays
    pd.DataFrame(rows, columns=["row", "subject", "slice"]).to_csv(
        tmp / "index.tsv", sep="\t", index=False
    )
    meta = {
        "size": size,
        "slices_per_subject": slices_per_subject,
        "n_slices": n,
        "contrasts": list(contrasts),
        "normalisation": NORMALISATION_RULE,
        "labels": TISSUE_CLASSES if with_labels else None,
        "subjects": per_subject,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))


class SliceStore:
    """Read one split of the slice store lazily (memory-mapped).

    A map-style dataset for ``torch.utils.data.DataLoader`` (``__len__``, ``__getitem__``);
    torch is imported only when a slice is read, so that building the store and parsing the
    workflow do not load it.

    A store holds every contrast its dataset was built with (``meta.json``'s ``contrasts``;
    stores written before pairs existed hold ``t1`` and ``t2``). ``pair`` picks the two a run
    translates between: items hold them under the method contract's neutral keys
    (:mod:`mrbench.pairs`). ``store[i]`` returns the paired slice ``i``; :meth:`pair` returns
    contrast ``a`` of slice ``i`` with contrast ``b`` of slice ``j`` (unpaired sampling), as a
    :class:`mrbench.pairs.Batch` with keys ``a``, ``b``, ``mask_a``, ``mask_b``. Images are
    ``(1, S, S)`` float tensors in ``[-1, 1]``; :meth:`image` reads any contrast of the store.

    With ``labels=True`` (for methods whose ``needs_labels`` trait is set) every item also holds
    ``label_a``/``label_b``: the tissue classes of the slice, ``(1, S, S)`` float class
    indices; other methods never see them.
    """

    def __init__(
        self, folder: str | Path, labels: bool = False, pair: Sequence[str] = DEFAULT_PAIR
    ) -> None:
        self.folder = Path(folder)
        self.labels = bool(labels)
        self.pair_contrasts = check_pair(pair)
        if self.labels and not (self.folder / "label.npy").exists():
            raise InputError(
                f"{self.folder / 'label.npy'}: tissue labels missing (the method needs labels; "
                "rebuild the slice store from subjects with label.nii.gz)"
            )
        for name in ("mask.npy", "index.tsv", "meta.json"):
            if not (self.folder / name).exists():
                raise InputError(f"{self.folder / name}: slice store file missing")
        meta_path, index_path = self.folder / "meta.json", self.folder / "index.tsv"
        try:
            self.meta = json.loads(meta_path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{meta_path}: not valid JSON ({exc})") from None
        if not isinstance(self.meta, dict) or not {"size", "subjects"} <= set(self.meta):
            raise InputError(f"{meta_path}: not a slice store meta file (needs size, subjects)")
        self.contrasts = tuple(self.meta.get("contrasts") or DEFAULT_PAIR)
        for c in self.pair_contrasts:
            if c not in self.contrasts:
                raise InputError(
                    f"{self.folder}: the slice store holds {', '.join(self.contrasts)}, not "
                    f"{c} (rebuild it with the dataset's pairs including {c})"
                )
        for c in self.contrasts:
            if not (self.folder / f"{c}.npy").exists():
                raise InputError(f"{self.folder / f'{c}.npy'}: slice store file missing")
        try:
            self.index = pd.read_csv(index_path, sep="\t")
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise InputError(f"{index_path}: cannot read the slice index ({exc})") from None
        missing = {"row", "subject", "slice"} - set(self.index.columns)
        if missing:
            raise InputError(
                f"{index_path}: slice index lacks column(s) {', '.join(sorted(missing))}"
            )
        self._arrays: dict[str, np.ndarray] | None = None

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        # opened lazily so that the object pickles cheaply into DataLoader workers
        if self._arrays is None:
            arrays = {}
            first = self.contrasts[0]
            for name in (*self.contrasts, "mask") + (("label",) if self.labels else ()):
                path = self.folder / f"{name}.npy"
                try:
                    arrays[name] = np.load(path, mmap_mode="r")
                except (ValueError, OSError, EOFError) as exc:
                    raise InputError(f"{path}: cannot read the slice array ({exc})") from None
                if arrays[name].ndim != 3 or arrays[name].shape[0] != len(self.index):
                    raise InputError(
                        f"{path}: shape {arrays[name].shape}, expected ({len(self.index)}, S, S) "
                        "as listed in index.tsv"
                    )
                if arrays[name].shape != arrays[first].shape:
                    raise InputError(
                        f"{path}: shape {arrays[name].shape} differs from {first}.npy's "
                        f"{arrays[first].shape}"
                    )
            if self.labels:  # read once, where the labels enter training
                check_labels(arrays["label"], self.folder / "label.npy")
            self._arrays = arrays
        return self._arrays

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = None
        return state

    def __len__(self) -> int:
        return len(self.index)

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    @property
    def subjects(self) -> list[str]:
        return list(dict.fromkeys(self.index["subject"]))

    def image(self, contrast: str, i: int) -> torch.Tensor:
        """Slice ``i`` of ``contrast`` as a ``(1, S, S)`` tensor in ``[-1, 1]``."""
        if contrast not in self.contrasts:
            raise InputError(
                f"{self.folder}: the slice store holds {', '.join(self.contrasts)}, not {contrast}"
            )
        return self._image(contrast, i)

    def _image(self, mod: str, i: int) -> torch.Tensor:
        # scaled in place with numpy: a torch op here would start intra-op threads for every
        # slice, which made loading in the training process 5-50x slower (benchmarks/README.md)
        import torch

        x = np.array(self.arrays[mod][i], dtype=np.float32)
        x *= 2
        x -= 1
        return torch.from_numpy(x)[None]

    def _mask(self, i: int) -> torch.Tensor:
        import torch

        return torch.from_numpy(np.array(self.arrays["mask"][i], dtype=np.float32))[None]

    def _label(self, i: int) -> torch.Tensor:
        import torch

        return torch.from_numpy(np.array(self.arrays["label"][i], dtype=np.float32))[None]

    def pair(self, i: int, j: int) -> Batch:
        """Contrast ``a`` of slice ``i`` and contrast ``b`` of slice ``j`` (neutral keys)."""
        a, b = self.pair_contrasts
        item = Batch(
            {
                "a": self._image(a, i),
                "b": self._image(b, j),
                "mask_a": self._mask(i),
                "mask_b": self._mask(j),
            },
            contrasts=self.pair_contrasts,
        )
        if self.labels:
            item["label_a"] = self._label(i)
            item["label_b"] = self._label(j)
        return item

    def __getitem__(self, i: int) -> Batch:
        return self.pair(i, i)

    def subject_rows(self, subject: str) -> np.ndarray:
        return self.index.loc[self.index["subject"] == subject, "row"].to_numpy()

    def subject_info(self, subject: str) -> dict:
        for info in self.meta["subjects"]:
            if info["subject"] == subject:
                return info
        raise KeyError(subject)
