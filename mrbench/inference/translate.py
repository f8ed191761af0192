"""Apply a trained model to volumes: whole test splits or any user volume.

Models work on square axial slices of ``image_size`` pixels, cropped about the brain. Both entry
points here crop each axial slice (last axis) with the same window the slice store uses
(:func:`mrbench.slices.crop_offsets` / :func:`~mrbench.slices.crop_pad`), translate the slices,
and place the predictions back on the volume's grid (:func:`~mrbench.slices.uncrop`), so that the
output opens on top of the source in ITK-SNAP or 3D Slicer. Voxels outside the window, and
slices that were not translated, are 0 (background).

Directions: users name contrast directions (``t2_to_flair``); a model knows only the method
contract's ``a_to_b``/``b_to_a`` of the pair it was trained on (``meta["pair"]`` of its
``model.pt``, T1w/T2w for files written before pairs existed). :func:`model_direction` maps one to
the other and refuses, with one line naming the model file, its pair and the asked direction, a
direction outside the model's pair (a T1w/T2w model asked to translate PD) before any output is
written.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrbench.finite import module_non_finite, translation_problem
from mrbench.inference.grid import onto_model_grid
from mrbench.io import (
    InputError,
    atomic_path,
    check_output_dir,
    load_volume,
    save_volume,
    staged_dir,
)
from mrbench.pairs import (
    NEUTRAL_DIRECTIONS,
    Direction,
    neutral_direction,
    pair_from_meta,
    parse_direction,
)
from mrbench.slices import SliceStore, crop_offsets, crop_pad, uncrop

#: tolerance on the [0, 1] intensity range of a preprocessed volume
RANGE_TOLERANCE = 1e-3


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a torch device that exists on this host;
    anything else is a one-line :class:`~mrbench.io.InputError` naming the value."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise InputError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise InputError(f"--device {device!r}: no CUDA GPU is usable on this host")
        if dev.index is not None and dev.index >= n:
            raise InputError(
                f"--device {device!r}: this host has {n} GPU(s), cuda:0 to cuda:{n - 1}"
            )
    return dev


def check_output_name(output: str | Path, input_path: str | Path | None = None) -> Path:
    """A NIfTI output name (``.nii`` or ``.nii.gz``) that is not the input file itself."""
    output = Path(output)
    if not output.name.endswith((".nii", ".nii.gz")) or output.name in (".nii", ".nii.gz"):
        raise InputError(f"{output}: output must be a NIfTI file name ending in .nii or .nii.gz")
    if (
        input_path is not None
        and Path(os.path.abspath(output)).resolve() == Path(os.path.abspath(input_path)).resolve()
    ):
        raise InputError(f"{output}: the output is the input file; choose another --output")
    return output


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a ``model.pt`` written by the trainer (see :mod:`mrbench.checkpoint`), in eval mode."""
    from mrbench.checkpoint import load_model as _load

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: model file not found")
    model = _load(path, device=device)
    bad = module_non_finite(model)
    if bad:  # a diverged model: every prediction would be NaN
        raise InputError(f"{path}: model weights are non-finite ({bad}); retrain it")
    model.eval()
    return model


def model_pair(model: torch.nn.Module) -> tuple[str, str]:
    """The contrast pair a loaded model was trained on (its ``model.pt`` meta)."""
    return pair_from_meta((getattr(model, "model_info", None) or {}).get("meta"))


def model_direction(checkpoint: str | Path, model: torch.nn.Module, direction: str) -> Direction:
    """The contract direction (``a_to_b``/``b_to_a``) that translates the contrast
    ``direction`` with this model; a one-line :class:`~mrbench.io.InputError` naming the model
    file, its pair and ``direction`` when the model was trained on another pair."""
    try:
        return neutral_direction(direction, model_pair(model))
    except ValueError as exc:
        raise InputError(f"{checkpoint}: {exc}") from None


def checkpoint_direction(checkpoint: str | Path, direction: str) -> Direction | None:
    """:func:`model_direction` from the model file's meta alone (memory-mapped, no weights read
    or networks built), so that ``mrbench translate`` refuses another pair's direction before
    it waits for a GPU. ``None`` where the file cannot be read this way: :func:`load_model`
    then reports it."""
    path = Path(checkpoint)
    if not path.exists():
        raise InputError(f"{path}: model file not found")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # corrupt, legacy format: load_model's one-line error names it
        return None
    meta = record.get("meta") if isinstance(record, dict) else None
    try:
        return neutral_direction(direction, pair_from_meta(meta))
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None


def _source_contrast(direction: str) -> str:
    """The source contrast of a contrast direction; InputError for a malformed one."""
    try:
        return parse_direction(direction)[0]
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _contract_direction(direction: str) -> Direction:
    """``direction`` as one of :data:`~mrbench.pairs.NEUTRAL_DIRECTIONS` (the guarded objects a
    method receives); a contrast direction here is a caller's bug, named in the error."""
    for neutral in NEUTRAL_DIRECTIONS:
        if str(direction) == str(neutral):
            return neutral
    raise ValueError(
        f"direction {direction!r}: a model translates {' or '.join(NEUTRAL_DIRECTIONS)}; map a "
        "contrast direction with mrbench.inference.translate.model_direction"
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def translate_windows(
    model: torch.nn.Module,
    windows: np.ndarray,
    direction: str,
    batch_size: int = 8,
    shown: str | None = None,
) -> tuple[np.ndarray, float]:
    """Translate ``(N, S, S)`` windows in ``[0, 1]`` in the contract ``direction`` (``a_to_b``
    or ``b_to_a``; ``shown``: the contrast direction that errors name); returns predictions in
    ``[0, 1]`` and the inference time in seconds (model calls only, device synchronised)."""
    direction = _contract_direction(direction)
    shown = shown or direction
    device = next((t.device for t in [*model.parameters(), *model.buffers()]), torch.device("cpu"))
    out = np.zeros(windows.shape, dtype=np.float32)
    seconds = 0.0
    for start in range(0, len(windows), batch_size):
        chunk = np.asarray(windows[start : start + batch_size], dtype=np.float32)
        x = torch.from_numpy(chunk)[:, None].to(device) * 2 - 1
        _sync(device)
        t0 = time.perf_counter()
        y = model.translate(x, direction)
        _sync(device)
        seconds += time.perf_counter() - t0
        problem = translation_problem(y, x)
        if problem is not None:  # never clipped into a plausible-looking volume
            raise InputError(
                f"model (plugin {getattr(model, 'plugin_name', '?')!r}) {problem} ({shown}, "
                f"windows {start}-{start + len(chunk) - 1}); no prediction written"
            )
        out[start : start + len(chunk)] = ((y[:, 0].float().cpu().numpy() + 1) / 2).clip(0, 1)
    return out, seconds


def check_normalised(volume: np.ndarray, path: str | Path) -> None:
    lo, hi = float(volume.min()), float(volume.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise InputError(
            f"{path}: intensities span [{lo:.4g}, {hi:.4g}], expected a volume normalised to "
            "[0, 1] as by the benchmark's preprocessing (mrbench preprocess)"
        )


def translate_volume(
    model: torch.nn.Module,
    volume: np.ndarray,
    direction: str,
    mask: np.ndarray | None = None,
    batch_size: int = 8,
    shown: str | None = None,
) -> np.ndarray:
    """Translate every axial slice of ``volume`` (last axis) that contains brain, in the
    contract ``direction`` (``a_to_b``/``b_to_a``; ``shown`` names it in errors).

    The brain is ``mask`` if given, otherwise the non-zero voxels (the preprocessing sets the
    background to 0). One crop window centred on the brain is used for all slices, as in the
    slice store. Returns a float32 volume of the input's shape.
    """
    if volume.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {volume.shape}")
    size = int(model.image_size)
    brain = (volume > 0) if mask is None else (mask > 0)
    if brain.shape != volume.shape:
        raise ValueError(f"mask shape {brain.shape} differs from the volume's {volume.shape}")
    zs = np.flatnonzero(brain.reshape(-1, brain.shape[-1]).any(axis=0))
    out = np.zeros(volume.shape, dtype=np.float32)
    if zs.size == 0:
        return out
    x0, y0 = crop_offsets(brain[..., zs], size)
    windows = np.stack([crop_pad(volume[..., z].astype(np.float32), x0, y0, size) for z in zs])
    preds, _ = translate_windows(model, windows, direction, batch_size, shown)
    for z, pred in zip(zs, preds, strict=True):
        out[..., z] = uncrop(pred, x0, y0, volume.shape[:2])
    return out


def translate_file(
    checkpoint: str | Path,
    direction: str,
    input_path: str | Path,
    output_path: str | Path,
    mask_path: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 8,
    seed: int = 0,
) -> Path:
    """``mrbench translate --input``: one user volume in, one NIfTI on the input's grid (its
    shape and affine) out. The input is brought to the model's training orientation and its
    voxel size checked against the training one (:mod:`mrbench.inference.grid`); a ``--mask``
    must be on the input's grid. ``direction`` is a contrast direction of the model's pair
    (:func:`model_direction`), checked before the input is read."""
    check_output_name(output_path, input_path)  # before any work; never over the source
    _source_contrast(direction)
    model = load_model(checkpoint, resolve_device(device))
    neutral = model_direction(checkpoint, model, direction)
    img = load_volume(input_path)
    check_normalised(np.asarray(img.dataobj, dtype=np.float32), input_path)
    mask_img = None
    if mask_path is not None:
        mask_img = load_volume(mask_path)
        if mask_img.shape != img.shape:
            raise InputError(
                f"{mask_path}: shape {mask_img.shape} differs from the input's {img.shape}"
            )
    grid = (getattr(model, "model_info", None) or {}).get("meta", {}).get("grid")
    volume, mask, restore, notes = onto_model_grid(img, grid, input_path, mask_img, mask_path)
    for note in notes:
        print(note)
    torch.manual_seed(seed)
    pred = translate_volume(
        model, volume, neutral, mask=mask, batch_size=batch_size, shown=direction
    )
    return save_volume(restore(pred), img.affine, output_path)


def _translate_subject(
    model: torch.nn.Module,
    store: SliceStore,
    subject: str,
    direction: str,
    neutral: Direction,
    batch_size: int,
    out_dir: Path,
) -> tuple[float, int]:
    """One subject of a store split -> ``out_dir/<subject>.nii.gz`` on its preprocessed grid;
    (inference seconds, slices translated). ``direction`` (contrast names) picks the source
    contrast of the store, ``neutral`` is the same direction in the model's terms."""
    info = store.subject_info(subject)
    rows = store.subject_rows(subject)
    zs = store.index.set_index("row").loc[rows, "slice"].to_numpy()
    src = _source_contrast(direction)
    windows = np.asarray(store.arrays[src][rows], dtype=np.float32)
    if not np.isfinite(windows).all():  # the data, not the model: never blamed on the model
        raise InputError(
            f"{store.folder}: {src}.npy holds non-finite values in the slices of {subject}; the "
            "slice store is corrupt: rebuild it (mrbench slices)"
        )
    preds, seconds = translate_windows(model, windows, neutral, batch_size, direction)
    shape = tuple(int(s) for s in info["shape"])
    volume = np.zeros(shape, dtype=np.float32)
    for z, pred in zip(zs, preds, strict=True):
        volume[..., int(z)] = uncrop(pred, int(info["x0"]), int(info["y0"]), shape[:2])
    save_volume(volume, np.asarray(info["affine"], dtype=np.float64), out_dir / f"{subject}.nii.gz")
    return seconds, len(rows)


def translate_store(
    checkpoint: str | Path,
    store_dir: str | Path,
    direction: str,
    out_dir: str | Path,
    device: str = "auto",
    batch_size: int = 8,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Translate a whole split of the slice store into per-subject NIfTI volumes.

    Each subject's predictions are placed back at their slice positions and crop offsets on the
    preprocessed grid (shape and affine from the store's ``meta.json``). ``out_dir`` is written
    as a temporary folder and renamed at the end; it also receives ``timing.json`` with the
    inference seconds per slice. An existing ``out_dir`` holding files that no earlier
    translation wrote is refused unless ``overwrite`` (a user's files are never deleted), and
    the store's own folder never is an output. ``direction`` must be one of the model's pair
    (:func:`model_direction`); the store is read with that pair, so it must hold both contrasts.
    """
    _source_contrast(direction)
    out_abs = check_output_dir(out_dir, "predictions", overwrite)  # before loading the model
    store_abs = Path(os.path.abspath(store_dir))
    if out_abs == store_abs or out_abs in store_abs.parents:
        raise InputError(
            f"{out_dir}: is (or holds) the slice store {store_dir}; choose another --out-dir"
        )
    dev = resolve_device(device)
    model = load_model(checkpoint, dev)
    neutral = model_direction(checkpoint, model, direction)  # before the store and any output
    pair = model_pair(model)
    store = SliceStore(store_dir, pair=pair)
    if int(model.image_size) != store.size:
        raise InputError(
            f"{checkpoint}: model image_size {model.image_size} differs from the slice store's "
            f"size {store.size} ({store_dir})"
        )
    torch.manual_seed(seed)
    with staged_dir(out_dir, "predictions", overwrite) as tmp:
        total_seconds, n_slices = 0.0, 0
        for subject in store.subjects:
            seconds, n = _translate_subject(
                model, store, subject, direction, neutral, batch_size, tmp
            )
            total_seconds += seconds
            n_slices += n
        subjects = store.subjects
        timing = {
            "checkpoint": str(checkpoint),
            "store": str(store_dir),
            "direction": direction,
            "pair": list(pair),
            "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "batch_size": batch_size,
            "seed": seed,
            "n_subjects": len(subjects),
            "n_slices": n_slices,
            "seconds_total": total_seconds,
            "seconds_per_slice": total_seconds / n_slices if n_slices else float("nan"),
            # generator/denoiser calls per translated batch: drives the inference cost of diffusion
            "sampling_steps": model.sampling_steps,
        }
        with atomic_path(tmp / "timing.json") as t:
            t.write_text(json.dumps(timing, indent=1))
    return timing
