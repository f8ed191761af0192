"""Download engine and safe extraction, against a local HTTP server (no internet needed)."""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
from conftest import LocalServer, write_tar

from mrbench.datasets.archive import list_members, safe_extract
from mrbench.datasets.download import download, md5sum
from mrbench.io import InputError


def _make_tar(path: Path, n_bytes: int = 300_000) -> Path:
    rng = np.random.default_rng(0)
    payload = rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    return write_tar(path, [("data/a.bin", payload), ("data/sub/b.txt", b"hello\n")])


class _Server(LocalServer):
    """Serves one file; ``drop_first`` cuts the first full response halfway."""

    def __init__(self, payload: bytes, drop_first: bool = False) -> None:
        self.payload = payload
        self.drop_first = drop_first
        self.requests: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                data = outer.payload
                start = 0
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.drop_first and len(outer.requests) == 1:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        super().__init__(Handler, "archive.tar")


@pytest.fixture
def archive(tmp_path: Path) -> tuple[bytes, str]:
    data = _make_tar(tmp_path / "src.tar").read_bytes()
    return data, hashlib.md5(data).hexdigest()


def test_download_completes_and_verifies(tmp_path: Path, archive) -> None:
    data, md5 = archive
    out = tmp_path / "dl" / "archive.tar"
    with _Server(data) as srv:
        download(srv.url, out, md5, progress=False, backoff=0.01)
    assert out.read_bytes() == data
    assert md5sum(out) == md5
    assert not out.with_name("archive.tar.part").exists()
    extracted = safe_extract(out, tmp_path / "x")
    assert sorted(p.relative_to(tmp_path / "x").as_posix() for p in extracted) == [
        "data/a.bin",
        "data/sub/b.txt",
    ]
    assert (tmp_path / "x" / "data" / "sub" / "b.txt").read_bytes() == b"hello\n"


def test_dropped_connection_is_resumed(tmp_path: Path, archive) -> None:
    data, md5 = archive
    out = tmp_path / "archive.tar"
    with _Server(data, drop_first=True) as srv:
        download(srv.url, out, md5, progress=False, backoff=0.01, timeout=5)
        requests = list(srv.requests)
    assert md5sum(out) == md5
    # the second request asked only for the missing half
    assert requests[0] is None
    assert requests[1] == f"bytes={len(data) // 2}-"


def test_partial_file_from_previous_run_is_resumed(tmp_path: Path, archive) -> None:
    data, md5 = archive
    out = tmp_path / "archive.tar"
    out.with_name("archive.tar.part").write_bytes(data[:1000])
    with _Server(data) as srv:
        download(srv.url, out, md5, progress=False)
        assert srv.requests == ["bytes=1000-"]
    assert out.read_bytes() == data


def test_wrong_checksum_fails_and_leaves_no_file(tmp_path: Path, archive) -> None:
    data, _ = archive
    out = tmp_path / "archive.tar"
    with _Server(data) as srv, pytest.raises(InputError) as err:
        download(srv.url, out, "0" * 32, progress=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert "md5 mismatch" in msg and str(out) in msg and "0" * 32 in msg
    assert not out.exists()
    assert not out.with_name("archive.tar.part").exists()


def test_existing_file_with_wrong_md5_is_replaced(tmp_path: Path, archive) -> None:
    data, md5 = archive
    out = tmp_path / "archive.tar"
    out.write_bytes(b"stale")
    with _Server(data) as srv:
        download(srv.url, out, md5, progress=False)
        assert len(srv.requests) == 1
        download(srv.url, out, md5, progress=False)  # verified: nothing downloaded
        assert len(srv.requests) == 1
    assert out.read_bytes() == data


def test_cli_reports_mismatch_in_one_line(tmp_path: Path, archive, capsys) -> None:
    from mrbench.cli import main

    data, md5 = archive
    out = tmp_path / "archive.tar"
    with _Server(data) as srv:
        rc = main(
            ["download", "--url", srv.url, "--out", str(out), "--md5", "f" * 32, "--no-progress"]
        )
        assert rc == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "md5 mismatch" in err
        assert (
            main(["download", "--url", srv.url, "--out", str(out), "--md5", md5, "--no-progress"])
            == 0
        )
    assert md5sum(out) == md5


def test_unreachable_server_fails_after_bounded_retries(tmp_path: Path) -> None:
    with _Server(b"x") as srv:
        url = srv.url
    # the server is shut down: connection refused on every attempt
    with pytest.raises(InputError, match="after 3 attempts"):
        download(url, tmp_path / "f", None, retries=2, backoff=0.01, timeout=2, progress=False)
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("../escape.txt", tarfile.REGTYPE, "escapes the target"),
        ("a/../../escape.txt", tarfile.REGTYPE, "escapes the target"),
        ("/abs/path.txt", tarfile.REGTYPE, "absolute path"),
        ("link", tarfile.SYMTYPE, "link member"),
        ("hard", tarfile.LNKTYPE, "link member"),
        ("dev", tarfile.CHRTYPE, "device"),
    ],
)
def test_unsafe_tar_members_are_refused(tmp_path: Path, name: str, kind: bytes, message) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    data = None
    if kind == tarfile.REGTYPE:
        data = b"pwned"
    else:
        info.linkname = "/etc/passwd"
    path = write_tar(tmp_path / "evil.tar", [("good.txt", b"ok"), (info, data)])
    dest = tmp_path / "out"
    with pytest.raises(InputError, match=message) as err:
        safe_extract(path, dest)
    assert str(path) in str(err.value)
    # nothing written, not even the safe member before the bad one
    assert not (dest / "good.txt").exists()
    assert not (tmp_path / "escape.txt").exists()
    assert list(dest.iterdir()) == []


def test_zip_traversal_and_symlink_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../x.txt", b"x")
    with pytest.raises(InputError, match="escapes"):
        safe_extract(bad, tmp_path / "o1")
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("l")
        info.external_attr = (0o120777) << 16  # a symbolic link
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(InputError, match="link member"):
        safe_extract(link, tmp_path / "o2")


def test_member_filter_and_listing(tmp_path: Path) -> None:
    path = _make_tar(tmp_path / "a.tar", 100)
    assert list_members(path) == ["data/a.bin", "data/sub/b.txt"]
    got = safe_extract(path, tmp_path / "o", include=lambda n: n.endswith(".txt"))
    assert [p.name for p in got] == ["b.txt"]
    assert not (tmp_path / "o" / "data" / "a.bin").exists()


def test_not_an_archive(tmp_path: Path) -> None:
    f = tmp_path / "x.tar"
    f.write_bytes(b"not an archive at all" * 10)
    with pytest.raises(InputError, match="not a .zip or .tar"):
        safe_extract(f, tmp_path / "o")


def test_tar_member_modes_are_not_taken_from_the_archive(tmp_path: Path) -> None:
    """A setuid, world-writable member comes out as a plain file with the umask's mode, and the
    bytes pass through tarfile's "data" filter unchanged."""
    import os
    import stat

    archive = tmp_path / "modes.tar"
    payload = b"volume bytes" * 100
    info = tarfile.TarInfo("case1/t1.nii.gz")
    info.mode = 0o4777
    info.uid, info.uname = 0, "root"
    write_tar(archive, [(info, payload)])
    old = os.umask(0o022)
    try:
        (out,) = safe_extract(archive, tmp_path / "out")
    finally:
        os.umask(old)
    assert out.read_bytes() == payload
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
