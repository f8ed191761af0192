"""Safe extraction of downloaded or user-supplied archives (.tar, .tar.gz, .tgz, .zip).

Archives come from the internet or from users, so a member must never write outside the target
folder. Every member is checked before its bytes are written: absolute paths, ``..`` components
that escape the target, symbolic and hard links, device files and FIFOs are refused and the
whole extraction fails with a one-line :class:`~mrbench.io.InputError` naming the archive and
the member. Tar members are then extracted by :mod:`tarfile` itself under its ``"data"`` filter
(PEP 706), which repeats the path and link checks and drops dangerous modes; zip members are
copied byte by byte. Files get the mode the umask asks for (not the one recorded in the
archive) and are written into a staging folder that is merged into the target only when the
whole archive passed, so a refused archive leaves nothing behind.

What the ``"data"`` filter alone would allow and this module refuses: links inside the target
(an archive of volumes has no reason to hold any), and members that merely contain ``..``.

``include`` selects members (for example only ``*.nii.gz`` of the subjects in a split), so a
multi-gigabyte archive is read once and only what is needed is written.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from mrbench.io import InputError, current_umask

MemberFilter = Callable[[str], bool]


def _check_name(archive: Path, name: str) -> PurePosixPath:
    """Return the member's relative path, or raise if it is absolute or escapes the target."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise InputError(f"{archive}: refusing member with an absolute path: {name!r}")
    parts = [p for p in PurePosixPath(norm).parts if p not in ("", ".")]
    depth = 0
    for p in parts:
        depth += -1 if p == ".." else 1
        if depth < 0:
            raise InputError(f"{archive}: refusing member that escapes the target folder: {name!r}")
    if ".." in parts:
        raise InputError(f"{archive}: refusing member with '..' in its path: {name!r}")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def archive_kind(path: str | Path) -> str:
    """``"zip"`` or ``"tar"`` (by content, not by name); raise for anything else."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: archive not found")
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        pass
    raise InputError(f"{path}: not a .zip or .tar(.gz) archive")


def _tar_members(archive: Path) -> Iterator[tuple[str, str, Callable]]:
    """Yield (name, kind, extractor) for each member, streaming through the tar once; the
    extractor writes the member to a path through ``tarfile``'s ``"data"`` filter."""
    try:
        tf = tarfile.open(archive, mode="r:*")  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"{archive}: cannot open tar archive ({exc})") from None
    with tf:
        try:
            for m in tf:
                if m.issym() or m.islnk():
                    kind = "link"
                elif m.isdir():
                    kind = "dir"
                elif m.isfile():
                    kind = "file"
                else:
                    kind = "device"
                yield m.name, kind, (lambda target, m=m: _extract_tar_member(tf, m, target))
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InputError(f"{archive}: corrupt or truncated tar archive ({exc})") from None


def _extract_tar_member(tf: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    """Write one (checked, regular) member to ``target`` with the ``"data"`` filter."""
    renamed = member.replace(name=target.name, deep=False)
    tf.extract(renamed, target.parent, filter="data")


def _copy_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    with zf.open(info) as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)


def _zip_members(archive: Path) -> Iterator[tuple[str, str, Callable]]:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{archive}: cannot open zip archive ({exc})") from None
    with zf:
        for info in zf.infolist():
            ftype = stat.S_IFMT(info.external_attr >> 16)  # 0 when no Unix type was recorded
            if ftype == stat.S_IFLNK:
                kind = "link"
            elif info.is_dir():
                kind = "dir"
            elif ftype not in (0, stat.S_IFREG):
                kind = "device"
            else:
                kind = "file"
            yield (
                info.filename,
                kind,
                (lambda target, info=info: _copy_zip_member(zf, info, target)),
            )


def list_members(archive: str | Path) -> list[str]:
    """Names of the regular files in an archive (after the same safety checks)."""
    archive = Path(archive)
    it = _zip_members(archive) if archive_kind(archive) == "zip" else _tar_members(archive)
    names = []
    for name, kind, _ in it:
        _check_kind(archive, name, kind)
        rel = _check_name(archive, name)
        if kind == "file":
            names.append(str(rel))
    return names


def _check_kind(archive: Path, name: str, kind: str) -> None:
    if kind == "link":
        raise InputError(f"{archive}: refusing link member: {name!r}")
    if kind == "device":
        raise InputError(f"{archive}: refusing device/special member: {name!r}")


class _Clashes:
    """Paths seen so far as files and as folders: an archive naming one path both ways (``a`` and
    ``a/b``) is refused, since extracting it fails half-way or lets one member replace another."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.files: set[PurePosixPath] = set()
        self.folders: set[PurePosixPath] = set()

    def add(self, rel: PurePosixPath, kind: str) -> None:
        parents = set(rel.parents) - {PurePosixPath(".")}
        is_file = kind == "file"
        clash = (rel in self.folders) if is_file else (rel in self.files)
        clash = clash or next((p for p in parents if p in self.files), None)
        if clash:
            name = rel if clash is True else clash
            raise InputError(f"{self.archive}: member {str(name)!r} is both a file and a folder")
        self.folders |= parents
        (self.files if is_file else self.folders).add(rel)


def safe_extract(
    archive: str | Path, dest: str | Path, include: MemberFilter | None = None
) -> list[Path]:
    """Extract the regular files of ``archive`` accepted by ``include`` into ``dest``.

    Returns the extracted paths. Every member (selected or not) is checked, so an archive with a
    single unsafe member is refused as a whole and ``dest`` is left as it was.
    """
    archive = Path(archive)
    dest = Path(dest)
    kind_of = archive_kind(archive)
    members = _zip_members(archive) if kind_of == "zip" else _tar_members(archive)
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".extract.tmp{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    written: list[PurePosixPath] = []
    clashes = _Clashes(archive)
    try:
        for name, kind, opener in members:
            _check_kind(archive, name, kind)
            rel = _check_name(archive, name)
            clashes.add(rel, kind)
            if kind != "file" or (include is not None and not include(str(rel))):
                continue
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                opener(target)
            except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
                raise InputError(f"{archive}: cannot extract {name!r} ({exc})") from None
            os.chmod(target, 0o666 & ~current_umask())
            written.append(rel)
        out_paths = []
        for rel in written:
            final = dest / rel
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, final)
            out_paths.append(final)
        return out_paths
    finally:
        shutil.rmtree(staging, ignore_errors=True)
