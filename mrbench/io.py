"""Reading and writing volumes and files with clear errors and atomic writes."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mrbench.errors import InputError

if TYPE_CHECKING:  # nibabel is imported where a volume is read or written (fast CLI, workflow)
    import nibabel as nib
    import pandas as pd


def load_volume(path: str | Path, *, ndim: int = 3) -> nib.Nifti1Image:
    """Load a NIfTI volume, checking that it is readable, ``ndim``-dimensional and not empty.

    The data are read once here so that a truncated file fails now, naming the file, rather
    than deep inside a later computation.
    """
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot read NIfTI volume ({reason})") from None
    shape = data.shape
    if ndim == 3 and len(shape) == 4 and shape[3] == 1:
        data = data[..., 0]
        shape = data.shape
    if len(shape) != ndim:
        raise InputError(f"{path}: expected a {ndim}D volume, got shape {tuple(shape)}")
    if not np.isfinite(data).all():
        raise InputError(f"{path}: volume contains NaN or infinite values")
    if not np.any(data):
        raise InputError(f"{path}: volume is all zero")
    return nib.Nifti1Image(np.asarray(data), img.affine, img.header)


def save_volume(data: np.ndarray, affine: np.ndarray, path: str | Path) -> Path:
    """Write a float32 (or uint8 for masks) NIfTI atomically (temporary name, then rename)."""
    import nibabel as nib

    path = Path(path)
    img = nib.Nifti1Image(np.asarray(data), affine)
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def current_umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux), else by
    setting and restoring it."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The temporary name keeps the final suffixes (``x.nii.gz`` -> ``.x.tmpXXXX.nii.gz``) so that
    libraries choosing a format by extension still do the right thing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the mode a plain open() would have
        # given, so colleagues on a shared server can read the outputs (umask 022: 0644)
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a CSV atomically (gzip-compressed where the name ends in ``.gz``); ``inf`` is
    written as ``inf`` and read back as a float by pandas."""
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, compression="gzip" if path.suffix == ".gz" else None)
    return path


#: the file that marks a folder as written by an mrbench command; its text names the kind of
#: folder ("predictions", "subjects", ...), so a rerun may replace it and nothing else is
OUTPUT_MARKER = ".mrbench-output"


def check_output_dir(path: str | Path, kind: str, overwrite: bool = False) -> Path:
    """Refuse an output folder that already holds files an mrbench command of ``kind`` did not
    write: replacing it would delete a user's files. ``overwrite`` (``--overwrite``) is the
    explicit consent. Returns the folder as an absolute path."""
    path = Path(path)
    if path.name in ("", ".", "..") or Path(os.path.abspath(path)).parent == Path(
        os.path.abspath(path)
    ):
        raise InputError(f"{path}: give the output folder by name (not '.', '..' or '/')")
    folder = Path(os.path.abspath(path))
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{path}: exists and is not a folder")
    if overwrite or not folder.exists() or not any(folder.iterdir()):
        return folder
    marker = folder / OUTPUT_MARKER
    if marker.is_file() and marker.read_text().strip() == kind:
        return folder
    raise InputError(
        f"{path}: folder exists and holds files that mrbench did not write there; choose "
        "another folder, empty it, or pass --overwrite to replace it"
    )


@contextlib.contextmanager
def staged_dir(path: str | Path, kind: str, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``path``; when the block succeeds it becomes
    ``path`` (marked as ``kind``) at once, so readers never see half a folder and a failure
    leaves what was there untouched. The folder is checked by :func:`check_output_dir` first."""
    folder = check_output_dir(path, kind, overwrite)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    old = None
    try:
        yield tmp
        (tmp / OUTPUT_MARKER).write_text(kind + "\n")
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes it private (0700)
        if folder.exists():  # moved aside first: a folder can only be renamed onto an empty one
            old = Path(
                tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent)
            )
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
