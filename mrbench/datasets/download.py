"""Download engine for the public datasets (IXI, MSD Task01) with resume and checksum.

Dataset files are several gigabytes and the servers that host them drop connections; a plain
``urlretrieve`` restarts from zero and leaves a half-written file under the final name that a
workflow would take for a finished download. Here a file is

* streamed to ``<name>.part`` beside the output, with a progress bar,
* resumed with an HTTP ``Range`` request after a dropped connection or when a previous run left a
  ``.part`` file, with a bounded number of retries and exponential back-off,
* checked against its md5 (when one is known) and only then renamed to the output path.

On a checksum mismatch the partial file is deleted (a corrupt prefix must not be resumed) and a
one-line :class:`~mrbench.io.InputError` names the file, the expected and the actual digest.

A download is accepted only when it can be verified: by its md5, or at least by the size the
server announces (Content-Length / Content-Range). With neither, a connection closed halfway
looks exactly like a finished file, so such a download is refused with a message saying so.
A malformed md5 is refused before any file is touched.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from mrbench.io import InputError

CHUNK = 1 << 20
USER_AGENT = "mrbench-download/1"
#: HTTP statuses worth retrying (server busy or transient failure); other 4xx are final
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


MD5_PATTERN = re.compile(r"[0-9a-f]{32}")


def check_md5(md5: str | None) -> str | None:
    """The md5 argument normalised (lower case), or an error if it is not 32 hex digits."""
    if md5 is None:
        return None
    norm = md5.strip().lower()
    if not MD5_PATTERN.fullmatch(norm):
        raise InputError(f"--md5 {md5!r}: expected 32 hexadecimal digits")
    return norm


class _Retryable(Exception):
    """A transient failure: the transfer may be resumed."""


def md5sum(path: str | Path, chunk: int = CHUNK) -> str:
    """Hex md5 digest of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _total_from_headers(resp: http.client.HTTPResponse, offset: int) -> int | None:
    """Full size of the resource from Content-Range (206) or Content-Length (200)."""
    cr = resp.headers.get("Content-Range")
    if cr and "/" in cr:
        total = cr.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
    cl = resp.headers.get("Content-Length")
    if cl is not None and cl.isdigit():
        return int(cl) + (offset if resp.status == 206 else 0)
    return None


def _range_start(resp: http.client.HTTPResponse) -> int | None:
    cr = resp.headers.get("Content-Range", "")
    # "bytes START-END/TOTAL"
    try:
        return int(cr.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _transfer(url: str, part: Path, timeout: float, progress: bool, desc: str) -> int | None:
    """One attempt: append to ``part`` from its current size to the end of the resource.
    Returns the size the server announced, ``None`` when it gave none."""
    offset = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # the partial file already holds everything the server has (per its own reply)
            return _total_from_416(exc)
        if exc.code in RETRY_STATUS:
            raise _Retryable(f"HTTP {exc.code}") from None
        raise InputError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise _Retryable(str(getattr(exc, "reason", exc))) from None
    with resp:
        if offset and resp.status == 206 and _range_start(resp) == offset:
            mode = "ab"
        else:
            # server ignored the range (or first request): start over
            offset, mode = 0, "wb"
        total = _total_from_headers(resp, offset)
        received = offset
        bar = tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=desc,
            disable=not progress,
            mininterval=2.0,
        )
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (TimeoutError, http.client.IncompleteRead, OSError) as exc:
                        raise _Retryable(
                            f"connection lost after {received} bytes ({exc})"
                        ) from None
                    if not block:
                        break
                    f.write(block)
                    received += len(block)
                    bar.update(len(block))
        finally:
            bar.close()
    if total is not None and received < total:
        raise _Retryable(f"connection closed after {received} of {total} bytes")
    if total is not None and received > total:
        part.unlink()
        raise _Retryable(f"received {received} bytes, more than the announced {total}")
    return total


def _total_from_416(exc: urllib.error.HTTPError) -> int | None:
    cr = exc.headers.get("Content-Range", "") if exc.headers else ""
    total = cr.rsplit("/", 1)[-1].strip() if "/" in cr else ""
    return int(total) if total.isdigit() else None


def download(
    url: str,
    dest: str | Path,
    md5: str | None = None,
    *,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``, resuming and verifying; return ``dest``.

    ``retries`` bounds the number of resumed attempts after the first; the wait before attempt
    ``k`` is ``backoff * 2**(k-1)`` seconds (capped at 60 s). If ``dest`` already exists and
    matches ``md5`` nothing is downloaded.
    """
    md5 = check_md5(md5)  # before touching any file
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and (md5 is None or md5sum(dest) == md5):
        return dest
    # an existing file that does not match stays until a verified download replaces it: the
    # md5 given may be the wrong one, and the user's file the good one
    part = dest.with_name(dest.name + ".part")
    last_error = ""
    total = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(backoff * 2 ** (attempt - 1), 60.0))
        try:
            total = _transfer(url, part, timeout, progress, dest.name)
            break
        except _Retryable as exc:
            last_error = str(exc)
    else:
        kept = f"; partial file kept at {part} and resumed on the next run" if part.exists() else ""
        raise InputError(
            f"{url}: download failed after {retries + 1} attempts ({last_error}){kept}"
        )
    if md5 is None and total is None:
        part.unlink(missing_ok=True)
        raise InputError(
            f"{url}: the server announced no size and no md5 is known, so a connection closed "
            "halfway cannot be told from a complete file; give the file's md5 (--md5)"
        )
    if md5 is not None:
        actual = md5sum(part)
        if actual != md5:
            part.unlink()
            raise InputError(
                f"{dest}: md5 mismatch for {url}: expected {md5}, got {actual} (download "
                "removed" + ("; the existing file was left as it was)" if dest.exists() else ")")
            )
    os.replace(part, dest)
    return dest
