"""The GPU code paths, proven on the CPU: CUDA visibility and the process group are mocked where
a real GPU would be needed (the barrier's device under per-rank visibility, NCCL's contiguity
rule), and the paper workflow's plan is read for what each job asks of the GPUs."""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import snakemake

from mrbench.training.distributed import DistContext

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ data-parallel ranks
def test_nccl_barrier_names_the_device_each_rank_sees(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the workstation's lock files every rank sees only its own GPU, as cuda:0: the
    barrier after the last step must name that device, not the rank's local index."""
    import torch.distributed as dist

    calls: list[object] = []
    monkeypatch.setattr(dist, "barrier", lambda **kw: calls.append(kw.get("device_ids")))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # one visible GPU per process
    for local in (0, 1):
        DistContext(rank=local, world_size=2, local_rank=local, backend="nccl").barrier()
    assert calls == [[0], [0]]
    calls.clear()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # SLURM: the job's GPUs visible
    DistContext(rank=1, world_size=2, local_rank=1, backend="nccl").barrier()
    assert calls == [[1]]


# ------------------------------------------------------------------ the paper workflow's plan
def _jobs(out: str) -> list[dict[str, str]]:
    """Every job block of a ``snakemake -n --printshellcmds`` plan: rule, resources, shell."""
    jobs = []
    for block in re.split(r"\n(?=\[|rule |localrule |checkpoint )", out):
        head = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        if not head:
            continue
        res = re.search(r"resources: (.*)", block)
        info = dict(
            kv.split("=", 1) for kv in (res.group(1).split(", ") if res else []) if "=" in kv
        )
        shell = re.search(r"Shell command: (.*)", block)
        jobs.append({"rule": head.group(1), "shell": shell.group(1) if shell else "", **info})
    return jobs


@pytest.fixture(scope="module")
def paper_plan(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    """The forced dry run of the paper setup (config/config.yaml), in a scratch copy."""
    work = tmp_path_factory.mktemp("paper")
    for item in ("Snakefile", "workflow", "config", "profiles", "envs"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, work / item, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, work / item)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ("-n", "--forceall", "--printshellcmds", "--cores", "8")
    res = snakemake(work, *args, "--configfile", "config/config.yaml", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return _jobs(res.stdout + res.stderr)


def test_every_paper_job_that_may_use_a_gpu_asks_for_one(paper_plan) -> None:
    """A job that may touch a GPU (``--device auto|cuda``) asks Snakemake for one, so the
    ``gpu`` resource counts it and its lock never waits on a GPU that Snakemake gave away;
    a job that asks for none is pinned to the CPU."""
    rules = {j["rule"] for j in paper_plan}
    assert {"train", "translate", "fidelity"} <= rules, sorted(rules)
    seen = 0
    for job in paper_plan:
        device = re.search(r"--device (\S+)", job["shell"])
        if device is None:
            continue
        seen += 1
        gpus = int(job.get("gpu", "0"))
        if device.group(1).strip("'\"") == "cpu":
            assert gpus == 0, job
        else:
            assert gpus >= 1, job
    assert seen > 100
    untrained = [j for j in paper_plan if j["rule"] == "translate" and j.get("gpu") == "0"]
    assert untrained and all("--device cpu" in j["shell"] for j in untrained)
    fid = [j for j in paper_plan if j["rule"] == "fidelity"]
    assert fid and all(j.get("gpu") == "1" for j in fid)


def test_training_waits_for_a_gpu_held_by_another_job() -> None:
    """A GPU briefly held by an evaluation job must not fail a training at start-up."""
    from mrbench.cli.train import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--spec", "{}", "--data", "d", "--out", "o"])
    assert args.gpu_wait >= 600


def test_fidelity_locks_the_gpu_it_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FID runs Inception on the GPU that its job locked (cuda:0 as the job sees it), not on
    physical GPU 0 beside a training."""
    from conftest import release_gpu_locks

    from mrbench.evaluation import fidelity
    from mrbench.training import gpu

    monkeypatch.setenv(gpu.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(gpu.COUNT_ENV, "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # restored (or removed) after the test
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    held = gpu.acquire_device("auto", env={})  # another job holds GPU 0
    try:
        assert fidelity._locked_device("auto") == "cuda"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1" and held.index == 0
        assert fidelity._locked_device("cpu") == "cpu"
    finally:
        release_gpu_locks()


# ------------------------------------------------------------------ NCCL's rules on every method
def _paper_size(name: str) -> torch.nn.Module:
    """The registered method at 256 px with its paper defaults: on the meta device (no memory,
    no time) where its constructor allows, else on the CPU (constructors that compute a scalar)."""
    from mrbench_methods import registry

    cls = registry()[name]
    torch.manual_seed(0)
    try:
        with torch.device("meta"):
            return cls({}, image_size=256)
    except RuntimeError as exc:
        if "meta" not in str(exc):
            raise
    return cls({}, image_size=256)


def _registered() -> list[str]:
    from mrbench_methods import registry

    return sorted(registry())


@pytest.mark.parametrize("name", _registered())
def test_every_tensor_broadcast_at_start_up_is_contiguous(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data-parallel job broadcasts every parameter and buffer from process 0; NCCL refuses a
    non-contiguous tensor (gloo, the CPU test's backend, accepts it)."""
    import torch.distributed as dist

    sent: list[tuple[int, ...]] = []

    def nccl_broadcast(t: torch.Tensor, src: int) -> None:
        assert t.is_contiguous(), f"{name}: a {tuple(t.shape)} tensor is not contiguous"
        sent.append(tuple(t.shape))

    monkeypatch.setattr(dist, "broadcast", nccl_broadcast)
    method = _paper_size(name)
    named = [*method.named_parameters(), *method.named_buffers()]
    strided = [n for n, t in named if not t.is_contiguous()]
    assert strided == [], f"{name}: non-contiguous tensors {strided}"
    ctx = DistContext(rank=0, world_size=2, local_rank=0, backend="nccl")
    ctx.prepare(method)
    ctx.close()
    assert len(sent) == len([*method.parameters(), *method.buffers()])


def test_start_up_broadcast_sends_a_strided_buffer_densely(monkeypatch: pytest.MonkeyPatch) -> None:
    """An out-of-tree method's strided buffer still reaches NCCL as a dense tensor, and the
    received values land in the buffer."""
    import torch.distributed as dist

    def nccl_broadcast(t: torch.Tensor, src: int) -> None:
        assert t.is_contiguous()
        t.fill_(7.0)  # what process 0 sent

    monkeypatch.setattr(dist, "broadcast", nccl_broadcast)
    net = torch.nn.Linear(2, 2)
    net.register_buffer("pos", torch.zeros(3, 4).t())
    assert not net.pos.is_contiguous()
    ctx = DistContext(rank=1, world_size=2, local_rank=1, backend="nccl")
    ctx.prepare(net)
    ctx.close()
    assert torch.equal(net.pos, torch.full((4, 3), 7.0))


# ------------------------------------------------------------------ the GPU check script
def _gpu_check(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHON": sys.executable, **env},
    )


def test_gpu_check_keeps_the_rows_measured_before_a_crash(tmp_path: Path) -> None:
    """A Snakemake that dies halfway and takes the check with it (as a time limit would):
    the CSV holds every row measured before."""
    stub = tmp_path / "stub" / "snakemake"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("")
    (stub / "__main__.py").write_text(
        "import os, signal\nprint('Building DAG of jobs...', flush=True)\n"
        "os.kill(os.getppid(), signal.SIGKILL)\n"
    )
    out = tmp_path / "gpu_check.csv"
    args = ("--dry", "--methods", "cyclegan", "--skip", "concurrent", "--out", str(out))
    res = _gpu_check(tmp_path, *args, PYTHONPATH=str(tmp_path / "stub"))
    # killed (timeout passes the signal on): no summary line, the CSV as it was
    assert res.returncode in (-9, 137), res.stdout[-2000:] + res.stderr[-2000:]
    assert "wrote" not in res.stdout
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["check"] for r in rows] == ["step"] * 3
    assert all(r["ok"] == "True" and float(r["sec_per_step"]) > 0 for r in rows)


def test_gpu_check_names_missing_dependencies_before_any_work(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    out = tmp_path / "gpu_check.csv"
    res = _gpu_check(tmp_path, "--dry", "--out", str(out), PYTHON=str(bare / "bin" / "python"))
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert res.returncode == 3 and len(lines) == 1, lines
    assert "lacks torch," in lines[0] and "snakemake" in lines[0]
    assert not out.exists()


def test_gpu_check_workflow_shares_one_gpu_between_two_jobs(tmp_path: Path) -> None:
    """``--resources gpu=2`` on one GPU: two trainings share it (two slots), neither waits for a
    lock; the rules' bare ``python`` is the Python running the check."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.gpu_check import workflow_env

    one, two = workflow_env(1, tmp_path), workflow_env(2, tmp_path)
    assert one["MRBENCH_GPU_SLOTS"] == "2"
    assert two.get("MRBENCH_GPU_SLOTS") == os.environ.get("MRBENCH_GPU_SLOTS")  # untouched
    python = shutil.which("python", path=one["PATH"])
    code = "import sys, snakemake; print(sys.executable)"
    res = subprocess.run([python, "-c", code], env=one, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == sys.executable, res.stderr


# ------------------------------------------------------------------ smaller GPU-path defects
def test_validation_scores_the_float32_outputs_that_the_test_translation_gives(
    tmp_path: Path,
) -> None:
    """``amp`` speeds up training only: the best weights are chosen on float32 translations,
    as the test set is translated, not on bfloat16 ones."""
    sys.path.insert(0, str(ROOT))
    from benchmarks._common import synthetic_store
    from mrbench.slices import SliceStore
    from mrbench.training.runs import Run
    from mrbench_methods.base import get_plugin

    store = SliceStore(synthetic_store(tmp_path / "val", 4, 16))
    method = get_plugin("identity")({}, image_size=16)
    seen: list[bool] = []
    plain = method.translate

    def translate(x: torch.Tensor, direction: str) -> torch.Tensor:
        seen.append(torch.is_autocast_enabled("cpu"))
        return plain(x, direction)

    method.translate = translate
    run = Run.__new__(Run)  # only what Run.validate reads
    run.method, run.val_store, run.val_rows, run.seed = method, store, np.arange(4), 0
    run.training, run.device = {"val_batch_size": 2, "amp": True}, torch.device("cpu")
    run.training_slices = lambda: iter(())
    scores = run.validate()
    assert seen and not any(seen) and np.isfinite(scores["psnr"])


def test_resume_restores_the_cuda_streams_it_can_and_says_when_the_gpus_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run saved with one visible GPU and resumed with two (or the reverse) restores the
    streams of the devices both have, device 0 first (the one a process trains on), and says
    that the others start fresh, instead of silently restoring none."""
    from mrbench import checkpoint

    state = checkpoint.rng_state()
    state["cuda"] = [torch.tensor([1], dtype=torch.uint8)]
    restored: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append(device))
    with pytest.warns(UserWarning, match="1 GPU.*2"):
        checkpoint.set_rng_state(state)
    assert restored == [0]


def test_untrained_methods_fit_on_the_cpu_without_a_gpu_lock(
    phantom_store: Path, tmp_path: Path
) -> None:
    """``mrbench train --device auto`` of a method that is fitted, not trained (a lookup table),
    runs on the CPU and takes no GPU: its GPU path is not needed and used to crash."""
    from conftest import cli_env, train_command

    spec = {"method": "intensity_map", "plugin": "intensity_map", "params": {"bins": 16}}
    env = cli_env() | {"MRBENCH_GPU_COUNT": "1", "MRBENCH_GPU_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = train_command(phantom_store, tmp_path / "run", spec, "--device", "auto")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    device = (tmp_path / "run" / "device.txt").read_text()
    assert device.startswith("device: cpu") and "GPU" not in device.split("\n")[0], device
    assert not list((tmp_path / "locks").glob("gpu*.lock"))


# ------------------------------------------------------------------ GPU and run-folder locks
def test_a_shell_preset_of_several_gpus_still_locks_one_per_job(tmp_path: Path) -> None:
    """``CUDA_VISIBLE_DEVICES=0,1`` left in a workstation shell: each job locks one of those
    GPUs and sees only it, instead of every job landing on cuda:0 without a lock."""
    from conftest import release_gpu_locks

    from mrbench.training import gpu

    envs = [{"CUDA_VISIBLE_DEVICES": "0,1"} for _ in range(3)]
    try:
        slots = [gpu.acquire_device("auto", lock_dir=tmp_path, env=e) for e in envs[:2]]
        assert [s.index for s in slots] == [0, 1]
        assert [e["CUDA_VISIBLE_DEVICES"] for e in envs[:2]] == ["0", "1"]
        with pytest.raises(RuntimeError, match="held by other jobs"):
            gpu.acquire_device("auto", lock_dir=tmp_path, env=envs[2])
    finally:
        release_gpu_locks()
    slurm = {"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_JOB_ID": "7"}  # the scheduler's choice
    assert gpu.acquire_device("auto", lock_dir=tmp_path, env=slurm).index is None
    assert slurm["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_ranks_of_one_job_never_share_a_gpu_slot(tmp_path: Path) -> None:
    """With ``MRBENCH_GPU_SLOTS=2`` two jobs may share a GPU, but two ranks of one data-parallel
    job must not (NCCL refuses two ranks on one device): a rank takes only a GPU's first slot."""
    from conftest import release_gpu_locks

    from mrbench.training import gpu

    env = {gpu.SLOTS_ENV: "2", "WORLD_SIZE": "2"}
    try:
        first = gpu.acquire_device("auto", lock_dir=tmp_path, n_devices=1, env=dict(env))
        assert first.index == 0
        with pytest.raises(RuntimeError, match="held by other jobs"):
            gpu.acquire_device("auto", lock_dir=tmp_path, n_devices=1, env=dict(env))
        single = {gpu.SLOTS_ENV: "2"}  # a one-process job still shares the device
        assert gpu.acquire_device("auto", lock_dir=tmp_path, n_devices=1, env=single).index == 0
    finally:
        release_gpu_locks()


_ORPHAN = """
import os, subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-c", "from mrbench.training import locks; locks.die_with_parent(); "
     "fd = locks.try_lock(sys.argv[1]); print('locked', flush=True); import time; time.sleep(60)",
     sys.argv[1]],
    start_new_session=True, stdout=subprocess.PIPE, text=True)
print(child.pid, child.stdout.readline().strip(), flush=True)
time.sleep(60)
"""


def test_a_worker_dies_with_its_killed_launcher_and_frees_its_locks(tmp_path: Path) -> None:
    """torchrun's workers run in sessions of their own: when the launcher is SIGKILLed they must
    end too, or their GPU and run-folder locks stop the re-run ("another trainer")."""
    import signal

    from mrbench.training import locks

    lock = tmp_path / "gpu0.lock"
    launcher = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN.replace("sys.argv[1]", repr(str(lock)))],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    pid, state = launcher.stdout.readline().split()
    assert state == "locked"
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    for _ in range(100):
        fd = locks.try_lock(lock)
        if fd is not None:
            locks.release(fd)
            break
        time.sleep(0.1)
    else:
        os.kill(int(pid), signal.SIGKILL)
        pytest.fail("the orphaned worker kept its lock")


# ------------------------------------------------------------------ validation and test cost
def _paper_spec(method: str) -> dict:
    from conftest import load_config

    from mrbench.config.resolve import method_spec_dict

    return method_spec_dict(load_config("config.yaml"), method)


def test_training_runtime_counts_every_validation() -> None:
    """UNIT-DDPM's validation at paper settings (1,100 U-Net evaluations per slice) costs hours;
    the wall-time request must include it, or SLURM kills the run before its last step."""
    from mrbench.config import resources as R

    spec = _paper_spec("unit_ddpm")
    spec = {**spec, "training": {**spec["training"], "val_max_slices": 600}}  # no budget
    quiet = {**spec, "training": {**spec["training"], "val_max_slices": 0}}
    n_val = R.validations(spec["training"])
    assert n_val >= 10  # every 5 of the recipe's epochs, and after the last step
    one = R.validation_minutes(spec, 256)
    assert one > 60  # 2 x 600 slices x 1,100 evaluations
    grown = R.train_runtime_minutes(spec, 256) - R.train_runtime_minutes(quiet, 256)
    assert grown >= min(R.MAX_MINUTES - R.train_runtime_minutes(quiet, 256), n_val * one)


def test_paper_translate_jobs_ask_for_their_sampler_time(paper_plan) -> None:
    """The profile's 60-minute default would kill UNIT-DDPM's test translation on every retry."""
    from mrbench.config import resources as R

    jobs = [j for j in paper_plan if j["rule"] == "translate"]
    assert jobs and all("runtime" in j for j in jobs)
    ddpm = [j for j in jobs if "/unit_ddpm/" in j["shell"]]
    expected = R.translate_runtime_minutes(_paper_spec("unit_ddpm"), 256)
    assert ddpm and all(int(j["runtime"]) == expected for j in ddpm)
    assert expected > 8 * 60  # about 2,500 slices x 11 s, with the safety factor


def test_waiting_ranks_outlast_a_paper_validation(tmp_path: Path) -> None:
    """Only process 0 validates; the others wait in a collective whose timeout must outlast
    that validation, or the watchdog aborts the job at its first validation."""
    from mrbench.cli.train import collective_timeout_s
    from mrbench.config import resources as R

    spec = _paper_spec("unit_ddpm")
    timeout = collective_timeout_s(spec, tmp_path / "no-store-yet")
    assert timeout >= 2 * 60 * R.validation_minutes(spec, 256) > 1800
    assert collective_timeout_s(_paper_spec("cyclegan"), tmp_path) == 1800


def test_unit_ddpm_validates_on_a_budget_the_recipes_table_states(tmp_path: Path) -> None:
    """The paper config gives UNIT-DDPM's slow sampler fewer validation slices (its validation
    then fits in under half an hour of GPU time), and the recipes table says so."""
    import json

    from mrbench.config import resources as R
    from mrbench.reporting import recipes_table

    ddpm, cyclegan = _paper_spec("unit_ddpm"), _paper_spec("cyclegan")
    assert ddpm["training"]["val_max_slices"] < cyclegan["training"]["val_max_slices"]
    assert R.validation_minutes(ddpm, 256) <= 30
    paths = []
    for spec, name in ((ddpm, "unit_ddpm"), (cyclegan, "cyclegan")):
        path = tmp_path / f"{name}.json"
        rec = {**spec, "method": name, "data": "results/data/ixi/slices/train", "steps": 1}
        rec["training"] = {**spec["training"], "steps": 10}
        path.write_text(json.dumps(rec))
        paths.append(path)
    doc, _ = recipes_table.recipe_table(paths)
    note = next(n for n in doc.notes if n.startswith("Validation slices"))
    assert "600 for CycleGAN" in note and "60 for UNIT-DDPM" in note, note


def test_gpu_check_starts_no_check_past_its_budget(tmp_path: Path) -> None:
    """Past its budget the script starts nothing more and records what it left out, so the
    time limit of a lent GPU never cuts it off mid-write."""
    out = tmp_path / "gpu_check.csv"
    res = _gpu_check(tmp_path, "--dry", "--skip", "step", "--budget", "0", "--out", str(out))
    assert res.returncode == 1, res.stderr[-2000:]
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["check"], r["ok"]) for r in rows] == [("concurrent", "False"), ("workflow", "False")]
    assert all("time budget" in r["detail"] for r in rows)
