"""Fault injection: results that look good but are not, and input turned against the user.

Each test reproduces one fault (a diverged model scored as best, a prediction on another grid,
a command from a config value, a planted lock-file link, a config error found only after the
data jobs, a download cut halfway, two writers in one run folder, small one-line errors, the
skull-strip of thick-slice clinical scans) and checks the behaviour that replaces it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    LocalServer,
    cli_env,
    copy_workflow,
    cyclegan_spec,
    load_config,
    poison_train_step,
    qc_record,
    release_gpu_locks,
    save_method,
    snakemake,
    tiny_training,
    train_cli_args,
    train_command,
    write_tar,
)

from mrbench.io import InputError

ROOT = Path(__file__).resolve().parents[1]

TINY_CYCLEGAN = cyclegan_spec("cyclegan_tiny", tiny_training(2, 1, log_every=1))


def _finite_state(path: Path) -> bool:
    from mrbench.checkpoint import load_safe

    def finite(obj) -> bool:
        if isinstance(obj, torch.Tensor):
            return bool(torch.isfinite(obj).all()) if obj.is_floating_point() else True
        if isinstance(obj, dict):
            return all(finite(v) for v in obj.values())
        if isinstance(obj, list | tuple):
            return all(finite(v) for v in obj)
        return True

    rec = load_safe(path)
    return finite(rec.get("method", rec.get("state")))


# ------------------------------------------------------------------ 1. diverged model
def test_valmetrics_refuse_to_score_nan() -> None:
    from mrbench.training import valmetrics

    target = np.zeros((8, 8))
    assert math.isnan(valmetrics.psnr(target, np.full((8, 8), np.nan)))
    assert math.isnan(valmetrics.psnr(target, np.full((8, 8), np.inf)))
    assert math.isnan(valmetrics.ssim(target, np.full((8, 8), np.nan)))


def test_diverged_training_fails_and_exports_nothing(
    phantom_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from mrbench.cli import main

    spec = cyclegan_spec("cyclegan_tiny", tiny_training(2, 1, log_every=1), lr=1e10)
    out = tmp_path / "run"
    rc = main(train_cli_args(phantom_store, out, spec))
    err = capsys.readouterr().err
    assert rc != 0, err
    line = [x for x in err.splitlines() if "error" in x][-1]
    assert "step" in line and ("loss" in line or "validation" in line), line
    assert "100.00" not in err
    model = out / "model.pt"
    assert not model.exists() or _finite_state(model)
    last = out / "checkpoints" / "last.pt"
    assert not last.exists() or _finite_state(last)


def test_nan_stop_names_logged_step_and_keeps_last_finite_checkpoint(
    phantom_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from mrbench.checkpoint import load_checkpoint
    from mrbench.cli import main

    # the third step, logged as step 3
    poison_train_step(monkeypatch, 2, loss="cycle_t1", weights=math.nan)
    spec = {**TINY_CYCLEGAN, "training": tiny_training(6, 2, log_every=1)}
    out = tmp_path / "run"
    rc = main(train_cli_args(phantom_store, out, spec))
    err = capsys.readouterr().err
    assert rc == 1
    line = [x for x in err.splitlines() if "error" in x][-1]
    assert "'cycle_t1'" in line and "at step 3" in line, line
    assert "last.pt (step 2)" in line, line
    last = out / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["step"] == 2
    assert _finite_state(last)
    assert not (out / "model.pt").exists()


def test_checkpoint_never_holds_non_finite_weights(
    phantom_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Weights turn NaN while the losses stay finite: the next checkpoint refuses to save them."""
    from mrbench.cli import main

    # the second step; its checkpoint (step 2) would hold inf weights
    poison_train_step(monkeypatch, 1, weights=math.inf, first_tensor_only=True)
    spec = {**TINY_CYCLEGAN, "training": tiny_training(4, 1, log_every=1, val_every=4)}
    out = tmp_path / "run"
    rc = main(train_cli_args(phantom_store, out, spec))
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "step 2" in err, err
    from mrbench.checkpoint import load_checkpoint

    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 1
    assert _finite_state(out / "checkpoints" / "last.pt")
    assert not (out / "model.pt").exists()


def _tiny_model(tmp_path: Path, poison: bool) -> Path:
    from mrbench_methods import get_plugin

    cls = get_plugin("cyclegan")
    method = cls(TINY_CYCLEGAN["params"], image_size=16)
    if poison:
        with torch.no_grad():
            next(iter(method.parameters())).fill_(math.nan)
    return save_method(method, tmp_path / ("nan.pt" if poison else "ok.pt"), "cyclegan_tiny")


def _volume(tmp_path: Path, name: str = "in.nii.gz") -> Path:
    from mrbench.io import save_volume

    rng = np.random.default_rng(0)
    vol = np.zeros((16, 16, 4), np.float32)
    vol[4:12, 4:12] = rng.uniform(0.2, 1.0, (8, 8, 4))
    return save_volume(vol, np.eye(4), tmp_path / name)


def test_translate_refuses_non_finite_weights(tmp_path: Path) -> None:
    from mrbench.inference.translate import translate_file

    model = _tiny_model(tmp_path, poison=True)
    with pytest.raises(InputError, match=r"nan\.pt.*non-finite"):
        translate_file(model, "t1_to_t2", _volume(tmp_path), tmp_path / "out.nii.gz", device="cpu")
    assert not (tmp_path / "out.nii.gz").exists()


def test_translate_never_writes_non_finite_prediction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mrbench.inference.translate import translate_file
    from mrbench_methods import get_plugin

    model = _tiny_model(tmp_path, poison=False)
    cls = get_plugin("cyclegan")
    monkeypatch.setattr(cls, "translate", lambda self, x, d: torch.full_like(x, math.nan))
    with pytest.raises(InputError, match="non-finite"):
        translate_file(model, "t1_to_t2", _volume(tmp_path), tmp_path / "out.nii.gz", device="cpu")
    assert not (tmp_path / "out.nii.gz").exists()


def test_metrics_refuse_non_finite_prediction(tmp_path: Path, capsys) -> None:
    import nibabel as nib

    from mrbench.cli import main

    target = _volume(tmp_path, "t.nii.gz")
    data = np.asarray(nib.load(target).dataobj).copy()
    data[8, 8, 1] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "p.nii.gz")
    rc = main(["metrics", "--pred", str(tmp_path / "p.nii.gz"), "--target", str(target)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert "p.nii.gz" in err and "NaN" in err


# ------------------------------------------------------------------ 2. grids compared
def _grid_case(tmp_path: Path) -> tuple[Path, Path, Path, np.ndarray, np.ndarray]:
    import nibabel as nib

    rng = np.random.default_rng(1)
    target = np.zeros((20, 18, 6), np.float32)
    target[3:17, 3:15] = rng.uniform(0.1, 1.0, (14, 12, 6))
    pred = np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1).astype(np.float32)
    affine = np.diag([1.2, 1.0, 3.0, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 20.0]
    mask = (target > 0).astype(np.uint8)
    for name, data in (("t.nii.gz", target), ("p.nii.gz", pred), ("m.nii.gz", mask)):
        nib.save(nib.Nifti1Image(data, affine), tmp_path / name)
    return tmp_path / "p.nii.gz", tmp_path / "t.nii.gz", tmp_path / "m.nii.gz", pred, affine


def _metrics_json(capsys, *args: str) -> tuple[int, str, dict]:
    from mrbench.cli import main

    rc = main(["metrics", *args])
    cap = capsys.readouterr()
    return rc, cap.err.strip(), json.loads(cap.out) if rc == 0 else {}


def test_metrics_refuse_shifted_prediction(tmp_path: Path, capsys) -> None:
    import nibabel as nib

    pred_path, target, mask, pred, affine = _grid_case(tmp_path)
    shifted = affine.copy()
    shifted[0, 3] += 50.0  # the same array 50 mm away: not the target's anatomy
    nib.save(nib.Nifti1Image(nib.load(target).get_fdata().astype(np.float32), shifted), pred_path)
    rc, err, _ = _metrics_json(capsys, "--pred", str(pred_path), "--target", str(target))
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert "p.nii.gz" in err and "t.nii.gz" in err and "grid" in err


def test_metrics_refuse_mask_on_another_grid(tmp_path: Path, capsys) -> None:
    import nibabel as nib

    pred_path, target, mask, pred, affine = _grid_case(tmp_path)
    shifted = affine.copy()
    shifted[1, 3] -= 7.0
    nib.save(nib.Nifti1Image(np.asarray(nib.load(mask).dataobj), shifted), mask)
    rc, err, _ = _metrics_json(
        capsys, "--pred", str(pred_path), "--target", str(target), "--mask", str(mask)
    )
    assert rc == 1 and "m.nii.gz" in err and "t.nii.gz" in err, err


def test_metrics_reorient_flipped_prediction(tmp_path: Path, capsys) -> None:
    import nibabel as nib

    pred_path, target, mask, pred, affine = _grid_case(tmp_path)
    args = ["--target", str(target), "--mask", str(mask), "--protocol", "max01"]
    rc, err, ref = _metrics_json(capsys, "--pred", str(pred_path), *args)
    assert rc == 0, err
    # the same prediction stored flipped left-right, its affine describing the flip
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = pred.shape[0] - 1
    flipped = tmp_path / "flipped.nii.gz"
    nib.save(nib.Nifti1Image(pred[::-1].copy(), affine @ flip), flipped)
    rc, err, got = _metrics_json(capsys, "--pred", str(flipped), *args)
    assert rc == 0, err
    for metric, value in ref["metrics"].items():
        assert got["metrics"][metric]["mean"] == pytest.approx(value["mean"], rel=1e-6), metric


def test_split_metrics_compare_prediction_grid(phantom_store: Path, tmp_path: Path) -> None:
    import nibabel as nib

    from mrbench.evaluation.scoring import evaluate_predictions
    from mrbench.slices import SliceStore

    store = SliceStore(phantom_store / "test")
    subject = store.subjects[0]
    info = store.subject_info(subject)
    shape = tuple(int(s) for s in info["shape"])
    affine = np.asarray(info["affine"], dtype=np.float64)
    vol = np.full(shape, 0.5, np.float32)
    preds = tmp_path / "preds"
    preds.mkdir()
    for s in store.subjects:
        i = store.subject_info(s)
        nib.save(
            nib.Nifti1Image(np.full(tuple(i["shape"]), 0.5, np.float32), np.asarray(i["affine"])),
            preds / f"{s}.nii.gz",
        )
    kw = {"dataset": "d", "method": "m", "seed": 0}
    ref = evaluate_predictions(preds, phantom_store / "test", "t1_to_t2", ["max01"], **kw)
    shifted = affine.copy()
    shifted[2, 3] += 50.0
    nib.save(nib.Nifti1Image(vol, shifted), preds / f"{subject}.nii.gz")
    with pytest.raises(InputError, match=rf"{subject}\.nii\.gz.*grid"):
        evaluate_predictions(preds, phantom_store / "test", "t1_to_t2", ["max01"], **kw)
    flip = np.diag([1.0, -1.0, 1.0, 1.0])
    flip[1, 3] = shape[1] - 1
    nib.save(nib.Nifti1Image(vol[:, ::-1].copy(), affine @ flip), preds / f"{subject}.nii.gz")
    got = evaluate_predictions(preds, phantom_store / "test", "t1_to_t2", ["max01"], **kw)
    assert np.allclose(got["value"].to_numpy(), ref["value"].to_numpy(), equal_nan=True)


# ------------------------------------------------------------------ 3. no command from a config
RULES = sorted((ROOT / "workflow" / "rules").glob("*.smk"))


def _shell_templates(text: str) -> list[str]:
    """The shell command templates of a .smk file (the string lines after each ``shell:``)."""
    import re

    out = []
    for block in re.split(r"\n\s*shell:\s*\n", text)[1:]:
        lines = []
        for line in block.splitlines():
            s = line.strip()
            if not s.startswith('"'):
                break
            lines.append(s.strip('"'))
        out.append("".join(lines))
    return out


def test_every_value_reaching_a_shell_is_quoted() -> None:
    import re

    unquoted = []
    for path in RULES:
        for cmd in _shell_templates(path.read_text()):
            for field in re.findall(r"(?<!\{)\{([^{}]+)\}(?!\})", cmd):
                if field != "threads" and not field.endswith(":q"):
                    unquoted.append(f"{path.name}: {{{field}}}")
    assert not unquoted, unquoted


@pytest.mark.parametrize("name", ["x;touch /tmp/INJECTED;", "a b", "$(id)", "../up", "-flag"])
def test_method_names_are_restricted(name: str) -> None:
    from snakemake.utils import validate

    from mrbench.config.resolve import ConfigError, check_config

    cfg = load_config()
    cfg["methods"] = {name: {"plugin": "identity"}}
    with pytest.raises(ConfigError, match=r"methods.*letters, digits"):
        check_config(cfg)
    with pytest.raises(Exception, match="does not match"):  # noqa: PT011 - the schema's error
        validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))


def test_config_paths_reach_the_shell_as_one_argument(tmp_path: Path) -> None:
    """A dry run prints every command: a split file named with shell syntax stays one argument."""
    import shlex

    import yaml

    copy_workflow(tmp_path)
    cfg = load_config()
    evil = "config/splits/p;touch INJECTED;$(touch INJECTED2).tsv"
    cfg["datasets"]["phantom"]["split_file"] = evil
    cfg["methods"] = {"identity": {"plugin": "identity"}}
    for role in ("table1_methods", "ablation_methods", "reference_method", "efficiency_pair"):
        cfg["evaluation"].pop(role, None)  # roles name methods no longer configured
    (tmp_path / "evil.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = snakemake(tmp_path, "--cores", "1", "-n", "-p", "--configfile", "evil.yaml", env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    commands = [ln for ln in res.stdout.splitlines() if "mrbench.cli" in ln and "INJECTED" in ln]
    assert commands, res.stdout[-2000:]
    for cmd in commands:
        words = shlex.split(cmd.split(">")[0])
        # the path is one argument, or one value of the one JSON argument (dataset settings)
        settings = [json.loads(w) for w in words if w.startswith("{")]
        assert evil in words or any(d.get("split_file") == evil for d in settings), cmd
        assert "touch" not in words, cmd
    assert not (tmp_path / "INJECTED").exists() and not (tmp_path / "INJECTED2").exists()


# ------------------------------------------------------------------ 4. GPU lock files
def test_planted_lock_symlink_never_truncates_its_target(tmp_path: Path) -> None:
    from mrbench.training import gpu

    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (locks / "gpu0.lock").symlink_to(victim)
    with pytest.raises(RuntimeError, match=r"gpu0\.lock"):
        gpu.acquire_device("auto", lock_dir=locks, n_devices=1, env={})
    assert victim.read_text() == "precious\n"
    release_gpu_locks()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant a file owned by another user")
def test_foreign_lock_file_is_refused_not_truncated(tmp_path: Path) -> None:
    from mrbench.training import gpu

    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    foreign = locks / "gpu0.lock"
    foreign.write_text("someone else's\n")
    os.chown(foreign, 65534, 65534)
    with pytest.raises(RuntimeError, match="owned by"):
        gpu.acquire_device("auto", lock_dir=locks, n_devices=1, env={})
    assert foreign.read_text() == "someone else's\n"


def test_lock_folder_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mrbench.training import gpu

    folder = tmp_path / "new" / "locks"
    monkeypatch.setenv(gpu.LOCK_DIR_ENV, str(folder))
    slot = gpu.acquire_device("auto", n_devices=1, env={})
    assert slot.device == "cuda"
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert (slot.lock_path.stat().st_mode & 0o077) == 0
    release_gpu_locks()
    # an existing folder open to others is made private; a link in its place is refused
    folder.chmod(0o777)
    gpu.acquire_device("auto", n_devices=1, env={})
    release_gpu_locks()
    assert (folder.stat().st_mode & 0o777) == 0o700
    link = tmp_path / "link"
    link.symlink_to(folder)
    with pytest.raises(RuntimeError, match="link"):
        gpu.acquire_device("auto", lock_dir=link, n_devices=1, env={})


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant a folder of another user")
def test_lock_folder_planted_by_another_user_is_refused(tmp_path: Path) -> None:
    from mrbench.training import gpu

    planted = tmp_path / "locks"
    planted.mkdir(mode=0o777)
    os.chown(planted, 65534, 65534)
    with pytest.raises(RuntimeError, match="owned by uid 65534"):
        gpu.acquire_device("auto", lock_dir=planted, n_devices=1, env={})
    assert not list(planted.iterdir())


# ------------------------------------------------------------------ 7. one writer per run folder
def test_second_trainer_on_one_run_folder_fails_naming_the_holder(
    phantom_store: Path, tmp_path: Path, capsys
) -> None:
    import subprocess
    import time

    from mrbench.cli import main

    out = tmp_path / "run"
    spec = {**TINY_CYCLEGAN, "training": tiny_training(100000, 100000, log_every=1)}
    first = subprocess.Popen(
        train_command(phantom_store, out, spec),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "train_log.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, "the first trainer ended early"
        t0 = time.monotonic()
        rc = main(train_cli_args(phantom_store, out, spec))
        err = capsys.readouterr().err
        assert rc == 1
        assert time.monotonic() - t0 < 20
        assert f"pid {first.pid}" in err and str(out) in err, err
    finally:
        first.kill()
        first.wait()
    # the holder is gone (killed): the lock went with it and a new trainer may take the folder
    spec["training"] |= {"steps": 1}
    assert main(train_cli_args(phantom_store, tmp_path / "run2", spec)) == 0


# ------------------------------------------------------------------ 6. downloads
class _CutServer(LocalServer):
    """Serves half of ``payload`` without Content-Length, then closes the connection."""

    def __init__(self, payload: bytes, length: bool = False, cut: bool = True) -> None:
        from http.server import BaseHTTPRequestHandler

        outer = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                outer.requests += 1
                self.send_response(200)
                if length:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[: len(payload) // 2] if cut else payload)
                self.wfile.flush()
                self.close_connection = True

        super().__init__(Handler, "data.tar")


def test_download_without_size_or_md5_is_not_accepted(tmp_path: Path) -> None:
    from mrbench.datasets.download import download

    payload = bytes(range(256)) * 400
    out = tmp_path / "data.tar"
    with _CutServer(payload) as srv, pytest.raises(InputError, match="no md5.*size|size.*md5"):
        download(srv.url, out, None, progress=False, retries=0)
    assert not out.exists()
    # with an md5 the cut file is caught by the checksum
    import hashlib

    with _CutServer(payload) as srv, pytest.raises(InputError, match="md5"):
        download(srv.url, out, hashlib.md5(payload).hexdigest(), progress=False, retries=0)
    assert not out.exists()
    # a size announced by the server suffices: a complete transfer is accepted
    with _CutServer(payload, length=True, cut=False) as srv:
        download(srv.url, out, None, progress=False, retries=0)
    assert out.read_bytes() == payload


@pytest.mark.parametrize("bad", ["xyz", "0" * 31, "g" * 32, "--"])
def test_malformed_md5_is_refused_before_touching_anything(tmp_path: Path, bad: str) -> None:
    from mrbench.datasets.download import download

    out = tmp_path / "good.tar"
    out.write_bytes(b"a good earlier download")
    with pytest.raises(InputError, match="md5"):
        download("http://127.0.0.1:9/never", out, bad, progress=False, retries=0)
    assert out.read_bytes() == b"a good earlier download"


def test_partial_file_message_only_when_one_exists(tmp_path: Path) -> None:
    from mrbench.datasets.download import download

    out = tmp_path / "f.tar"
    with pytest.raises(InputError) as info:
        download("http://127.0.0.1:9/never", out, None, retries=0, timeout=2, progress=False)
    assert "partial file kept" not in str(info.value)
    assert not out.with_name("f.tar.part").exists()


# ------------------------------------------------------------------ 8. small ones
def _identity_model(tmp_path: Path, plugin: str = "cyclegan") -> Path:
    return _tiny_model(tmp_path, poison=False)


@pytest.mark.parametrize("device", ["bogus", "cuda:3"])
def test_bad_device_is_one_line(tmp_path: Path, capsys, device: str) -> None:
    from mrbench.cli import main

    if device.startswith("cuda") and torch.cuda.device_count() > 3:
        pytest.skip("this host has a GPU 3")
    args = ["translate", "--checkpoint", str(_identity_model(tmp_path)), "--direction"]
    args += ["t1_to_t2", "--input", str(_volume(tmp_path)), "--output", str(tmp_path / "o.nii.gz")]
    rc = main([*args, "--device", device])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert device in err and "Traceback" not in err


@pytest.mark.parametrize(
    "members",
    [
        [("data/a", b"file"), ("data/a/b.txt", b"inside")],
        [("data/a/b.txt", b"inside"), ("data/a", b"file")],
    ],
)
def test_tar_with_file_and_folder_of_one_name(tmp_path: Path, members) -> None:
    from mrbench.datasets.archive import safe_extract

    archive = write_tar(tmp_path / "x.tar", members)
    with pytest.raises(InputError, match=r"x\.tar.*'data/a'.*file and a folder"):
        safe_extract(archive, tmp_path / "out")
    assert not any((tmp_path / "out").rglob("*.txt"))


@pytest.mark.parametrize("name", [".png", "out.png", "out"])
def test_translate_output_must_be_nifti(tmp_path: Path, capsys, name: str) -> None:
    from mrbench.cli import main

    args = ["translate", "--checkpoint", str(_identity_model(tmp_path)), "--direction"]
    args += ["t1_to_t2", "--input", str(_volume(tmp_path)), "--device", "cpu"]
    rc = main([*args, "--output", str(tmp_path / name)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert name in err and ".nii" in err
    assert not (tmp_path / name).exists()


def test_translate_output_equal_to_input_is_refused(tmp_path: Path, capsys) -> None:
    from mrbench.cli import main

    src = _volume(tmp_path)
    before = src.read_bytes()
    args = ["translate", "--checkpoint", str(_identity_model(tmp_path)), "--direction"]
    args += ["t1_to_t2", "--input", str(src), "--device", "cpu"]
    (tmp_path / "sub").mkdir()
    for output in (src, tmp_path / "sub" / ".." / src.name):
        rc = main([*args, "--output", str(output)])
        err = capsys.readouterr().err.strip()
        assert rc == 1 and "input" in err, err
    assert src.read_bytes() == before


@pytest.mark.parametrize("broken", ["meta.json", "t1.npy", "index.tsv"])
def test_bad_slice_store_files_are_named(phantom_store: Path, tmp_path: Path, broken: str) -> None:
    import shutil

    from mrbench.slices import SliceStore

    store = tmp_path / "val"
    shutil.copytree(phantom_store / "val", store)
    (store / broken).write_bytes(b"\x93NUMPY garbage{" if broken.endswith(".npy") else b"{oops")
    with pytest.raises(InputError, match=broken.replace(".", r"\.")):
        s = SliceStore(store)
        s.arrays  # noqa: B018 - opened lazily
        s[0]


def test_checkpoint_error_names_global_without_unsafe_advice(tmp_path: Path) -> None:
    from mrbench.checkpoint import load_safe

    path = tmp_path / "evil.pt"
    torch.save({"f": os.system}, path)
    with pytest.raises(InputError) as info:
        load_safe(path)
    msg = str(info.value)
    assert "evil.pt" in msg and "posix.system" in msg and len(msg.splitlines()) == 1
    assert "weights_only" not in msg and "False" not in msg


# ------------------------------------------------------------------ 5. config errors before any job
@pytest.mark.parametrize(
    ("method", "key", "value", "pattern"),
    [
        ("cyclegan", "ngf", "four", r"methods\.cyclegan\.params\.ngf.*'four'"),
        ("cyclegan", "ngf", -4, r"methods\.cyclegan\.params\.ngf.*-4"),
        ("cyclegan", "lambda_cycle", True, r"methods\.cyclegan\.params\.lambda_cycle"),
        ("syndiff", "unet_mult", 2, r"methods\.syndiff\.params\.unet_mult"),
    ],
)
def test_method_params_checked_when_config_is_read(method, key, value, pattern) -> None:
    from mrbench.config.resolve import ConfigError, check_config

    cfg = load_config()
    cfg["methods"][method]["params"][key] = value
    with pytest.raises(ConfigError, match=pattern):
        check_config(cfg)


def test_size_constraint_checked_for_the_configured_image_size() -> None:
    from mrbench.config.resolve import ConfigError, check_config

    cfg = load_config()
    cfg["methods"] = {"cyclegan": cfg["methods"]["cyclegan"]}
    cfg["datasets"]["phantom"]["image_size"] = 18  # CycleGAN downsamples twice: needs 4 | size
    with pytest.raises(ConfigError, match=r"methods\.cyclegan.*image_size.*18.*phantom"):
        check_config(cfg)


@pytest.mark.parametrize(
    ("key", "value"), [("batch_size", 0), ("lr_schedule", "expo"), ("steps", "many")]
)
def test_training_keys_checked_in_schema_and_config(key: str, value) -> None:
    from snakemake.utils import validate

    from mrbench.config.resolve import ConfigError, check_config

    cfg = load_config()
    cfg["training"][key] = value
    with pytest.raises(ConfigError, match=rf"training\.{key}"):
        check_config(cfg)
    with pytest.raises(Exception, match=str(value)):  # noqa: PT011 - the schema's error
        validate(cfg, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    cfg = load_config()
    cfg["methods"]["cyclegan"]["training"] = {key: value}
    with pytest.raises(ConfigError, match=rf"methods\.cyclegan\.training\.{key}"):
        check_config(cfg)


def test_new_plugins_get_parameter_checks_for_free() -> None:
    from typing import ClassVar

    from mrbench_methods.base import TranslationMethod

    class Plugin(TranslationMethod):
        plugin_name = "probe"
        defaults: ClassVar[dict] = {"width": 8, "rate": 0.5, "flag": True, "name": "x"}

    Plugin.check_params({"width": 16, "rate": 1, "flag": False}, 32)
    for key, value in [("width", 2.5), ("width", -1), ("rate", "fast"), ("flag", 1)]:
        with pytest.raises(ValueError, match=rf"^{key}:"):
            Plugin.check_params({key: value}, 32)


# ------------------------------------------------------------------ 9. skull-strip QC flags
def _qc(volume: float, nmi: tuple[float, float], ncc: tuple[float, float]) -> dict:
    return qc_record("s1", volume, nmi, ncc, cover=1.0)


def test_qc_flags_implausible_volume_and_idle_registration(tmp_path: Path, capsys) -> None:
    from mrbench.datasets.ixi import qc_table
    from mrbench.preprocessing.qc import BRAIN_VOLUME_ML, qc_flags

    assert BRAIN_VOLUME_ML == (900.0, 2000.0)
    assert qc_flags(_qc(1400, (1.10, 1.25), (0.20, 0.45))) == []
    big = qc_flags(_qc(2420, (1.10, 1.25), (0.20, 0.45)))
    assert len(big) == 1 and "2420" in big[0] and "900-2000" in big[0]
    assert "brain volume" in qc_flags(_qc(600, (1.10, 1.25), (0.2, 0.45)))[0]
    idle = qc_flags(_qc(1400, (1.2000, 1.2004), (0.400, 0.402)))
    assert len(idle) == 1 and "barely" in idle[0]
    files = []
    cases = [_qc(2420, (1.1, 1.25), (0.2, 0.45)), _qc(1400, (1.2, 1.2003), (0.4, 0.402))]
    for i, q in enumerate(cases):
        q["subject"] = f"s{i}"
        files.append(tmp_path / f"{i}.json")
        files[-1].write_text(json.dumps(q))
    df = qc_table(files, tmp_path / "qc.tsv")
    out = capsys.readouterr().out
    assert "2420" in df.loc[df.subject == "s0", "flag"].item()
    assert "barely" in df.loc[df.subject == "s1", "flag"].item()
    assert "QC s0" in out and "QC s1" in out


# ------------------------------------------------------------------ 9. thick-slice skull-strip
TESTDATA = ROOT.parent / "shared" / "testdata"
IXI_T1 = TESTDATA / "ixi" / "IXI002-Guys-0828-T1_brain.nii.gz"
IXI_MASK = TESTDATA / "ixi" / "IXI002-Guys-0828-T1_brainmask.nii.gz"
SKULL_T1 = TESTDATA / "skull_on" / "subj01_t1.nii.gz"


def _thick_axial(path: Path, inplane: float = 0.9, thickness: float = 5.5):
    """A clinical-like thick-slice T1: 0.9 mm in plane, each 5.5 mm axial slice the average of
    the signal over its slab (partial volume, as an acquisition integrates it)."""
    import ants
    import nibabel as nib
    from scipy import ndimage

    from mrbench.preprocessing.ants_io import canonical, to_ants

    data, aff = canonical(nib.load(str(path)))
    fine = ants.resample_image(
        to_ants(data.astype(np.float32), aff), (inplane, inplane, 0.5), False, 0
    )
    slab = ndimage.uniform_filter1d(fine.numpy(), int(round(thickness / 0.5)), axis=2)
    grid = ants.resample_image(fine, (inplane, inplane, thickness), False, 0)
    return ants.resample_image_to_target(fine.new_image_like(slab), grid, interp_type="linear")


def _on_grid(mask: np.ndarray, affine: np.ndarray, target) -> np.ndarray:
    import ants

    from mrbench.preprocessing.ants_io import to_ants

    img = to_ants(mask.astype(np.float32), affine)
    return ants.resample_image_to_target(img, target, interp_type="linear").numpy() > 0.5


def _strip_and_score(
    name: str, thick, ref: np.ndarray, tmp_path: Path
) -> tuple[float, float, np.ndarray]:
    from mrbench.preprocessing.ants_io import from_ants
    from mrbench.preprocessing.qc import qc_figure
    from mrbench.preprocessing.skullstrip import skull_strip

    arr, aff = from_ants(thick)
    mask, _ = skull_strip(arr, aff)
    spacing = np.sqrt((aff[:3, :3] ** 2).sum(0))
    vol = float(mask.sum() * np.prod(spacing)) / 1000
    dice = 2 * float((mask & ref).sum()) / float(mask.sum() + ref.sum())
    extra = float((mask & ~ref).sum() * np.prod(spacing)) / 1000
    norm = arr / max(float(np.percentile(arr, 99.5)), 1e-6)
    qc_dir = Path(os.environ.get("MRBENCH_QC_DIR", tmp_path))
    qc_dir.mkdir(parents=True, exist_ok=True)
    qc_figure(
        np.clip(norm, 0, 1),
        np.clip(norm, 0, 1) * ref,
        mask,
        spacing,
        qc_dir / f"thick_{name}.png",
        f"{name}, 5.5 mm axial: mask (cyan) {vol:.0f} ml, reference edges (red), "
        f"Dice {dice:.3f}, {extra:.0f} ml outside the reference",
    )
    print(f"thick {name}: Dice {dice:.4f}, volume {vol:.0f} ml, extra {extra:.0f} ml")
    return dice, vol, mask


@pytest.mark.slow
@pytest.mark.skipif(not IXI_T1.exists(), reason=f"real test scans not found at {TESTDATA}")
def test_thick_slice_ixi_skull_strip(tmp_path: Path) -> None:
    """IXI T1 at 5.5 mm axial slices against its shipped brain mask."""
    import nibabel as nib

    from mrbench.preprocessing.ants_io import canonical

    thick = _thick_axial(IXI_T1)
    m, maff = canonical(nib.load(str(IXI_MASK)))
    ref = _on_grid(m > 0, maff, thick)
    dice, vol, _ = _strip_and_score("ixi", thick, ref, tmp_path)
    assert dice >= 0.90
    assert 900 <= vol <= 2000


@pytest.mark.slow
@pytest.mark.skipif(not SKULL_T1.exists(), reason=f"real test scans not found at {TESTDATA}")
def test_thick_slice_skull_on_skull_strip(tmp_path: Path) -> None:
    """The skull-on head at 5.5 mm axial slices. The scan has no reference mask; the reference
    is the mask of the 1.6 mm isotropic scan (checked against the registered T2 and its QC figure
    in tests/test_preprocess.py), brought to the thick grid."""
    import nibabel as nib

    from mrbench.preprocessing.ants_io import canonical
    from mrbench.preprocessing.skullstrip import skull_strip

    data, aff = canonical(nib.load(str(SKULL_T1)))
    iso_mask, _ = skull_strip(np.clip(data, 0, None), aff)
    thick = _thick_axial(SKULL_T1)
    ref = _on_grid(iso_mask, aff, thick)
    dice, vol, mask = _strip_and_score("skull_on", thick, ref, tmp_path)
    assert dice >= 0.90
    assert 900 <= vol <= 2000
