"""Shared fixtures: a tiny phantom slice store, the tiny workflow run and the path of the real
test cases."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

import mrbench  # noqa: F401  (maps mrbench_methods to methods/ in a plain checkout)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TESTDATA = SHARED / "testdata"

torch.set_num_threads(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--plugin-path",
        action="append",
        default=[],
        metavar="FOLDER",
        help="folder of out-of-tree method plugins for the contract tests (repeatable; "
        "MRBENCH_PLUGIN_PATH and installed entry points mrbench.methods are read as well)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the plugins of --plugin-path before the contract tests collect the registry."""
    folders = config.getoption("plugin_path")
    if folders:
        from mrbench_methods.base import load_plugin_paths

        load_plugin_paths(folders)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest files come first: the tests of the shared tiny workflow run (all in
    tests/test_workflow.py, which ``--dist loadfile`` gives to one worker, so the run happens
    once), then the trained method runs of tests/test_method_runs.py and the workflow run twice
    by tests/test_results_follow_inputs.py, so that they start at once instead of finishing
    last."""

    def rank(item: pytest.Item) -> int:
        if "tiny_run" in getattr(item, "fixturenames", ()):
            return 0
        long_files = ("test_method_runs.py", "test_results_follow_inputs.py")
        return 1 if item.path.name in long_files else 2

    items.sort(key=rank)  # stable


def require_testdata(*parts: str) -> Path:
    """Path inside ../shared/testdata, or skip the test with the reason."""
    path = TESTDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not available: {path} is absent (it lives beside the project)")
    return path


def run_module(
    module: str,
    *args: str,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` with this interpreter in ``cwd`` under ``env``, its output
    captured as text; the exit status is the caller's to check."""
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def mrbench_cli(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``python -m mrbench.cli args`` in a process of its own (keywords: :func:`run_module`)."""
    return run_module("mrbench.cli", *args, **kw)


def snakemake(
    work: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """The ``snakemake`` beside this interpreter with ``args`` in ``work``, its output captured
    as text; ``kw`` goes to :func:`subprocess.run` (e.g. ``umask``)."""
    cmd = [str(Path(sys.executable).with_name("snakemake")), *args]
    return subprocess.run(
        cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout, **kw
    )


def load_config(name: str = "test.yaml") -> dict[str, Any]:
    """A shipped config of config/ as a dict (a fresh copy on each call)."""
    import yaml

    return yaml.safe_load((ROOT / "config" / name).read_text())


@pytest.fixture(scope="session")
def phantom_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny phantom slice store: 6 subjects, 8 mm voxels, 16 px, splits train/val/test.

    Returns the folder holding ``train/``, ``val/`` and ``test/``; subject volumes are in
    ``<folder>/../subjects``.
    """
    from mrbench.datasets.phantom import prepare_subject
    from mrbench.datasets.phantom_volumes import PhantomSettings, subject_ids, write_phantom
    from mrbench.datasets.splits import make_splits, subjects_in
    from mrbench.slices import SubjectVolumes, build_split

    base = tmp_path_factory.mktemp("phantom")
    ids = subject_ids(6)
    write_phantom(base / "raw", 6, 0, PhantomSettings(voxel_size=8.0))
    for sid in ids:
        prepare_subject(base / "raw", sid, base / "subjects" / sid)
    df = make_splits(ids, 0.34, 0.25, 0)
    for split in ("train", "val", "test"):
        subjects = [SubjectVolumes.in_dir(s, base / "subjects" / s) for s in subjects_in(df, split)]
        build_split(subjects, base / "slices" / split, size=16, slices_per_subject=8)
    return base / "slices"


@pytest.fixture(scope="session")
def demo_phantom_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo-sized phantom slice store with tissue labels: 8 subjects at 5.5 mm (the demo's
    voxel size), 32 px, 16 slices each; 6 train, 1 val, 1 test subjects."""
    from mrbench.datasets.phantom import prepare_subject
    from mrbench.datasets.phantom_volumes import PhantomSettings, subject_ids, write_phantom
    from mrbench.slices import SubjectVolumes, build_split

    base = tmp_path_factory.mktemp("demo_phantom")
    ids = subject_ids(8)
    write_phantom(base / "raw", 8, 0, PhantomSettings(voxel_size=5.5))
    for sid in ids:
        prepare_subject(base / "raw", sid, base / "subjects" / sid)
    for split, subjects in (("train", ids[:6]), ("val", ids[6:7]), ("test", ids[7:])):
        vols = [SubjectVolumes.in_dir(s, base / "subjects" / s) for s in subjects]
        build_split(vols, base / "slices" / split, size=32, slices_per_subject=16)
    return base / "slices"


def copy_workflow(work: Path) -> Path:
    """The workflow files of the repository in ``work`` (a fresh working directory)."""
    for item in ("Snakefile", "workflow", "config", "envs"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    return work


class TinyRun(NamedTuple):
    """A finished run of the whole workflow: its working directory and the environment that
    reruns it (the entry-point plugin's site folder on PYTHONPATH)."""

    work: Path
    env: dict[str, str]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """The whole DAG once, on ``config/test.yaml`` plus three methods the library never names:
    ``mine`` (a folder plugin of ``plugin_paths``), ``theirs`` (an installed distribution's entry
    point) and ``without_content_critic`` (a renamed DisDiff variant). One run serves the
    workflow tests and the out-of-tree plugin tests; in the copy, ``config/test.yaml`` is this
    config, so reruns and reports use the same command line as on the shipped one."""
    import fcntl

    # One run per test session, also under pytest-xdist: the workers share the session's base
    # folder, and the first to take the lock runs the workflow while the others wait for it (two
    # runs at once on 2 cores took twice as long each)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = tmp_path_factory.getbasetemp().parent / "tiny_run"
    else:
        base = tmp_path_factory.mktemp("tiny_run")
    base.mkdir(parents=True, exist_ok=True)
    with open(base.with_name(base.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _tiny_run_in(base)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _tiny_run_in(base: Path) -> TinyRun:
    """The tiny run of :func:`tiny_run` in ``base``: reused where an earlier worker finished it."""
    import yaml
    from toy_plugins import write_folder_plugin, write_installed_dist

    outside, work = base / "user", base / "workflow"  # the plugins outside the repository
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(outside / "site")])}
    env.pop("MRBENCH_PLUGIN_PATH", None)
    if (base / "finished").exists():
        return TinyRun(work, env)
    for partial in (outside, work):
        shutil.rmtree(partial, ignore_errors=True)
    folder = outside / "my_methods"
    write_folder_plugin(folder)
    site = write_installed_dist(outside / "site")
    assert str(site) in env["PYTHONPATH"], site
    work.mkdir()
    copy_workflow(work)
    cfg = load_config()
    cfg["methods"]["without_content_critic"] = dict(cfg["methods"]["disdiff_no_dc"])
    cfg["methods"]["mine"] = {"plugin": "toy_folder"}
    cfg["methods"]["theirs"] = {"plugin": "toy_ep"}
    cfg["plugin_paths"] = [str(folder)]
    cfg["evaluation"].update(reference_method="mine", efficiency_pair=["mine", "theirs"])
    (work / "config" / "test.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    # the usual umask, as on a shared server
    args = ("--cores", "2", "--configfile", "config/test.yaml")
    res = snakemake(work, *args, env=env, timeout=2400, umask=0o022)
    assert res.returncode == 0, res.stderr[-4000:]
    (base / "finished").touch()
    return TinyRun(work, env)


def save_method(method: Any, path: Path, name: str, meta: dict[str, Any] | None = None) -> Path:
    """``method`` (a plugin instance) written as the model file the trainer exports, under the
    config name ``name``."""
    from mrbench.checkpoint import model_record, save_model

    rec = model_record(
        method=name,
        plugin=method.plugin_name,
        params=method.params,
        image_size=method.image_size,
        state=method.state_dict(),
        meta=meta or {},
    )
    return save_model(rec, path)


def release_gpu_locks() -> None:
    """Release every GPU lock this test process holds (a job's exit does this in the workflow)."""
    from mrbench.training import gpu, locks

    while gpu._held:
        locks.release(gpu._held.pop())


# ------------------------------------------------------------------ the trainer's command line
def train_cli_args(data: Path, out: Path, spec: dict[str, Any], *extra: str) -> list[str]:
    """``mrbench train`` arguments: ``spec`` on the slices of ``data`` into ``out``, on the CPU in
    one thread without a progress bar; ``extra`` is appended (e.g. ``"--seed", "3"``)."""
    return [
        "train",
        "--spec",
        json.dumps(spec),
        "--data",
        str(data),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-progress",
        *extra,
    ]


def train_command(data: Path, out: Path, spec: dict[str, Any], *extra: str) -> list[str]:
    """:func:`train_cli_args` as a process of its own: ``python -m mrbench.cli train ...``."""
    return [sys.executable, "-m", "mrbench.cli", *train_cli_args(data, out, spec, *extra)]


def cli_env() -> dict[str, str]:
    """The environment of a trainer process: this checkout on PYTHONPATH, one OpenMP thread and
    no torchrun variables of the calling process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def tiny_training(steps: int, every: int, **more: Any) -> dict[str, Any]:
    """A short training section: ``steps`` steps of batch 2, validating (on 4 slices) and
    checkpointing every ``every`` steps; ``more`` adds or overrides keys."""
    keys = {"batch_size": 2, "val_every": every, "checkpoint_every": every, "val_max_slices": 4}
    return {"steps": steps, **keys, **more}


def cyclegan_spec(method: str, training: dict[str, Any], **params: Any) -> dict[str, Any]:
    """The training spec of a tiny CycleGAN named ``method``; ``params`` override its sizes."""
    tiny = {"ngf": 4, "ndf": 4, "n_blocks": 1, "n_layers_d": 2, "pool_size": 3}
    return {"method": method, "plugin": "cyclegan", "params": tiny | params, "training": training}


#: the training section of the SIGKILL-resume tests (:func:`kill_and_resume`): 24 short steps with a
#: checkpoint every 3, so that the kill lands mid-run, in deterministic mode, so that the resumed
#: weights can be compared bit for bit
RESUME_TRAINING = tiny_training(24, 8, checkpoint_every=3, log_every=5, deterministic=True)
#: a tiny CycleGAN with that training section
RESUME_CYCLEGAN = cyclegan_spec("cyclegan_tiny", RESUME_TRAINING)


class Resumed(NamedTuple):
    """The two runs of :func:`kill_and_resume` and the checkpoint the second one resumed from."""

    full: Path
    resumed: Path
    killed: dict[str, Any]


def kill_and_resume(data: Path, tmp_path: Path, spec: dict[str, Any], *extra: str) -> Resumed:
    """Train ``spec`` twice in processes of their own: once uninterrupted (``tmp_path/full``) and
    once killed with SIGKILL as soon as its first ``last.pt`` is written, then started again
    (``tmp_path/resumed``). Checks that the second run resumed and that both ``model.pt`` files
    hold bitwise identical weights."""
    from mrbench.checkpoint import load_checkpoint, read_model

    full, resumed = tmp_path / "full", tmp_path / "resumed"
    done = mrbench_cli(*train_cli_args(data, full, spec, *extra), env=cli_env())
    assert done.returncode == 0, done.stderr
    proc = subprocess.Popen(
        train_command(data, resumed, spec, *extra),
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = resumed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (resumed / "model.pt").exists(), "the run finished before it could be killed"
    killed = load_checkpoint(last)
    assert 0 < killed["step"] < spec["training"]["steps"]
    again = mrbench_cli(*train_cli_args(data, resumed, spec, *extra), env=cli_env())
    assert again.returncode == 0, again.stderr
    assert "resuming from" in again.stderr
    a, b = read_model(full / "model.pt"), read_model(resumed / "model.pt")
    assert a["state"].keys() == b["state"].keys()
    for key in a["state"]:
        assert torch.equal(a["state"][key], b["state"][key]), f"{key} differs after resume"
    return Resumed(full, resumed, killed)


def poison_train_step(
    monkeypatch: pytest.MonkeyPatch,
    at_step: int,
    *,
    loss: str | None = None,
    weights: float | None = None,
    first_tensor_only: bool = False,
    plugin: str = "cyclegan",
) -> None:
    """Make ``plugin``'s training step ``at_step`` (0-based) go wrong after it ran: its loss
    ``loss`` becomes NaN and/or the method's parameters (or only the first tensor) are filled
    with ``weights``."""
    from mrbench_methods import get_plugin

    cls = get_plugin(plugin)
    original = cls.train_step

    def poisoned(self, batch, step):
        losses = original(self, batch, step)
        if step == at_step:
            if weights is not None:
                params = list(self.parameters())[:1] if first_tensor_only else self.parameters()
                with torch.no_grad():
                    for p in params:
                        p.fill_(weights)
            if loss is not None:
                losses[loss] = math.nan
        return losses

    monkeypatch.setattr(cls, "train_step", poisoned)


# ------------------------------------------------------------------ the style-based translators
def unpaired_batch(b: int, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """``b`` random slices of domain ``a`` in [-1, 1] and, as ``b``, their negatives in reverse
    order (a :class:`mrbench.pairs.Batch`)."""
    from mrbench.pairs import Batch

    g = torch.Generator().manual_seed(seed)
    xa = torch.rand(b, 1, size, size, generator=g) * 2 - 1
    return Batch({"a": xa, "b": -xa.flip(0)})


def record_steps(optimizers: dict[str, torch.optim.Optimizer]) -> list[str]:
    """The names of ``optimizers`` in the order they step from now on (each ``step`` is wrapped)."""
    calls: list[str] = []
    for name, opt in optimizers.items():
        step = opt.step

        def recorder(*a, _name=name, _step=step, **k):
            calls.append(_name)
            return _step(*a, **k)

        opt.step = recorder
    return calls


def check_test_time_style(
    plugin: str, b: int, codes: Callable[[Any, list[dict[str, Any]]], Iterable[torch.Tensor]]
) -> type:
    """The test-time style of a style-based translator, built tiny at 32 px under seed 0 and
    trained one step on an :func:`unpaired_batch` of ``b``: after ``prepare_inference`` on three
    such batches, row ``i`` of ``style_mean`` is the mean of the ``i``-th codes that
    ``codes(model, slices)`` yields; translation is then deterministic, and random with
    ``style_mode: prior`` (the same weights). Returns the plugin class."""
    from mrbench_methods import get_plugin

    cls = get_plugin(plugin)
    torch.manual_seed(0)
    model = cls(cls.tiny_params, image_size=32)
    model.train_step(unpaired_batch(b), 0)
    slices = [unpaired_batch(b, seed=s) for s in range(3)]
    model.prepare_inference(iter(slices))
    model.eval()
    with torch.no_grad():
        for row, code in enumerate(codes(model, slices)):
            torch.testing.assert_close(model.style_mean[row], code.mean(0))
    x = unpaired_batch(b, seed=9)["a"]
    torch.testing.assert_close(model.translate(x, "a_to_b"), model.translate(x, "a_to_b"))
    prior = cls({**cls.tiny_params, "style_mode": "prior"}, image_size=32)
    prior.load_state_dict(model.state_dict())
    prior.eval()
    assert not torch.equal(prior.translate(x, "a_to_b"), prior.translate(x, "a_to_b"))
    return cls


# ------------------------------------------------------------------ small shared inputs
def seeded(seed: int, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` right after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return fn(*args)


def brain_batch(
    seed: int,
    b: int,
    size: int,
    coarse: int = 4,
    labels: bool = False,
    contrasts: tuple[str, str] = ("t1", "t2"),
) -> dict[str, torch.Tensor]:
    """Paired brain-like slices in [-1, 1] under the neutral keys (a :class:`mrbench.pairs.Batch`
    of ``contrasts``): a smooth tissue map (``coarse`` px of noise enlarged), ``a`` bright where
    ``b`` is dark, a disc mask; with ``labels``, tissue classes (0 outside the mask, 1-3 by
    tissue value)."""
    from mrbench.pairs import Batch

    g = torch.Generator().manual_seed(seed)
    coarse_map = torch.rand(b, 1, coarse, coarse, generator=g)
    tissue = torch.nn.functional.interpolate(coarse_map, size=size, mode="bilinear")
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    mask = ((xx**2 + yy**2) < 0.7).float().expand(b, 1, size, size)
    xa = tissue * mask * 2 - 1
    xb = (1 - tissue) ** 2 * mask * 2 - 1
    out = Batch({"a": xa, "b": xb, "mask_a": mask.clone(), "mask_b": mask.clone()}, contrasts)
    if labels:
        lab = (1 + (tissue * 3).clamp(max=2.999).floor()) * mask
        out["label_a"], out["label_b"] = lab.clone(), lab.clone()
    return out


def tidy_row(**values: Any) -> dict[str, Any]:
    """One row of a tidy results table: ``values`` over dataset d, method m, seed 0, direction
    t1_to_t2, slice 0, protocol max01 and metric psnr."""
    row = {"dataset": "d", "method": "m", "seed": 0, "direction": "t1_to_t2", "slice": 0}
    return row | {"protocol": "max01", "metric": "psnr"} | values


def qc_record(subject: str, volume: float, nmi: tuple, ncc: tuple, cover: float = 1) -> dict:
    """A subject's preprocessing QC record: brain ``volume`` (ml), a T2 field of view covering
    ``cover`` of it, NMI and gradient NCC of the T2 before and after registration."""
    sim = {"region": "brain", "nmi_header": nmi[0], "nmi_registered": nmi[1]}
    sim |= {"gradient_ncc_header": ncc[0], "gradient_ncc_registered": ncc[1]}
    return {
        "subject": subject,
        "brain_volume_ml": volume,
        "mask_volume_ml": volume * cover,
        "t2_fov_brain_fraction": cover,
        "seconds": 30.0,
        "similarity": sim,
    }


def write_tar(path: Path, members: Iterable[tuple[Any, bytes | None]]) -> Path:
    """A tar archive at ``path`` of ``members``: pairs of a name (a folder where the bytes are
    None) or a prepared ``TarInfo``, and the member's bytes."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tf:
        for member, data in members:
            info = member if isinstance(member, tarfile.TarInfo) else tarfile.TarInfo(member)
            if data is None:
                info.type = info.type if info is member else tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


class LocalServer:
    """A context manager serving the ``BaseHTTPRequestHandler`` class ``handler`` on a free port
    of 127.0.0.1 in a thread; ``url`` is the address of the file ``name`` there."""

    def __init__(self, handler: type, name: str) -> None:
        import threading
        from http.server import ThreadingHTTPServer

        handler.log_message = lambda *args: None  # keep test output quiet
        self.name = name
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/{self.name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------ a store of any contrast pair
def write_pair_store(
    folder: Path,
    contrasts: tuple[str, ...] = ("t2", "flair"),
    n: int = 8,
    size: int = 32,
    labels: bool = True,
    seed: int = 0,
) -> Path:
    """A tiny slice store split in ``folder`` holding ``contrasts`` (as ``slices.build_split``
    writes one: ``<contrast>.npy`` in [0, 1], ``mask.npy``, ``label.npy``, ``index.tsv``,
    ``meta.json`` with ``"contrasts"``), two subjects of ``n // 2`` slices each; the k-th
    contrast is a different smooth function of one tissue map. Returns ``folder``."""
    import json

    import numpy as np
    import pandas as pd

    from mrbench.domain import TISSUE_CLASSES

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((n, 1, 4, 4)).astype(np.float32))
    tissue = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear")[:, 0].numpy()
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    mask = np.broadcast_to((xx**2 + yy**2) < 0.7, (n, size, size)).astype(np.uint8)
    for k, c in enumerate(contrasts):
        image = (tissue if k % 2 == 0 else (1 - tissue) ** 2) ** (1 + k // 2) * mask
        np.save(folder / f"{c}.npy", image.astype(np.float32))
    np.save(folder / "mask.npy", mask)
    if labels:
        lab = (1 + np.minimum(tissue * 3, 2.999).astype(np.uint8)) * mask
        np.save(folder / "label.npy", lab.astype(np.uint8))
    subjects = [f"S{i}" for i in range(2)]
    rows = [(i, subjects[i * 2 // n], i % (n // 2)) for i in range(n)]
    pd.DataFrame(rows, columns=["row", "subject", "slice"]).to_csv(
        folder / "index.tsv", sep="\t", index=False
    )
    affine = np.diag([2.0, 2.0, 2.0, 1.0]).tolist()
    info = [
        {"subject": s, "slices": list(range(n // 2)), "x0": 0, "y0": 0,
         "shape": [size, size, n // 2], "affine": affine}
        for s in subjects
    ]  # fmt: skip
    meta = {
        "size": size,
        "slices_per_subject": n // 2,
        "n_slices": n,
        "contrasts": list(contrasts),
        "labels": TISSUE_CLASSES if labels else None,
        "subjects": info,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return folder
