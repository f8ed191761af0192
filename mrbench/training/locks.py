"""Lock files that cannot be turned against their user, and the one-writer lock of a run folder.

A lock is an open descriptor holding ``fcntl.flock`` on a small file; the kernel drops it when
the process ends in any way (SIGKILL included), so a crash never leaves a stale lock. Because the
lock file's path may be predictable, it is opened without following a symbolic link
(``O_NOFOLLOW``) and used only when it is a regular file owned by the current user: a link or a
file planted by someone else is refused, never truncated. Folders holding such locks are made
private (mode 0700, owner checked).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path


class LockError(RuntimeError):
    """A lock cannot be taken safely, or is held by another process (the message says which)."""


def private_dir(path: str | Path) -> Path:
    """Create ``path`` (mode 0700) or check an existing one: a real folder (not a link) owned by
    the current user; its permissions are narrowed to 0700 if they were wider."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise LockError(f"{path}: lock folder is a symbolic link; refusing to use it")
    if not stat.S_ISDIR(st.st_mode):
        raise LockError(f"{path}: lock folder is not a folder")
    if st.st_uid != os.getuid():
        raise LockError(
            f"{path}: lock folder is owned by uid {st.st_uid}, not by you (uid {os.getuid()}); "
            "set another folder"
        )
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def open_lock_file(path: str | Path) -> int:
    """Open (creating, mode 0600) a lock file without following links; refuse anything but a
    regular file owned by the current user. Returns the descriptor; the file is not changed."""
    path = Path(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockError(f"{path}: lock file is a symbolic link; refusing to use it") from None
        raise LockError(f"{path}: cannot open lock file ({exc.strerror})") from None
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "is not a regular file"
    elif st.st_uid != os.getuid():
        problem = f"is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if problem:
        os.close(fd)
        raise LockError(f"{path}: lock file {problem}; refusing to use it")
    return fd


def try_lock(path: str | Path) -> int | None:
    """Take the lock at ``path`` without waiting: the descriptor (pid written in the file), or
    ``None`` when another process holds it. Raises :class:`LockError` for an unsafe file."""
    fd = open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)  # ours: a regular file owned by this user, locked by this process
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def holder(path: str | Path) -> str:
    """The pid written in a lock file by its holder, or ``?`` (read without following links)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return "?"
    try:
        return os.read(fd, 64).decode(errors="replace").strip() or "?"
    finally:
        os.close(fd)


def release(fd: int) -> None:
    """Release a lock taken by :func:`try_lock` (process exit does this too)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def die_with_parent() -> None:
    """End this process (SIGKILL) when its parent ends, on Linux; elsewhere a no-op.

    torchrun starts each worker in a session of its own, so a workflow manager that SIGKILLs
    the launcher does not reach the workers: they would keep training and keep their GPU and
    run-folder locks, and the re-run would stop at "another trainer". With this the kernel ends
    a worker with its launcher, and so releases its locks."""
    import sys

    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) != 0:
        return  # not permitted here: the worker then outlives a killed launcher, as before
    if os.getppid() != parent:  # the launcher ended before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


#: name of the one-writer lock inside a training run folder
RUN_LOCK = ".train.lock"


def lock_run_folder(folder: str | Path) -> int:
    """Make this process the only writer of a run folder (``mrbench train --out``): two trainers
    on one folder (an orphan of a killed workflow plus its re-run) would interleave the logs and
    checkpoints. Returns the descriptor, held until the process ends; raises :class:`LockError`
    naming the holder's pid when another process writes there."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RUN_LOCK
    fd = try_lock(path)
    if fd is None:
        raise LockError(
            f"{folder}: another trainer (pid {holder(path)}) is writing this run folder; "
            "stop it or choose another --out"
        )
    # unlike the GPU locks (private folder), it lives among the results: readable as they are
    from mrbench.io import current_umask

    os.fchmod(fd, 0o666 & ~current_umask())
    return fd
