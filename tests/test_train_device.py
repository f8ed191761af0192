"""A paper-config training job whose ``--device auto`` finds no GPU stops before training with
one line, unless the config allows the CPU (as the CPU demo does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from mrbench.config.resolve import method_spec_dict, train_device_flags

ROOT = Path(__file__).resolve().parents[1]


def _paper_config() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def _train(spec: dict, store: Path, out: Path, flags: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "MRBENCH_GPU_COUNT": "0", "OMP_NUM_THREADS": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [sys.executable, "-m", "mrbench.cli", "train", "--spec", json.dumps(spec)]
    cmd += ["--data", str(store), "--out", str(out), "--max-steps", "1", *flags]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def test_device_flags_follow_the_config() -> None:
    cfg = _paper_config()
    assert "allow_cpu" not in cfg  # the paper setup never falls back to the CPU
    assert train_device_flags(cfg, 1) == ["--device", "auto"]
    assert train_device_flags({**cfg, "allow_cpu": True}, 1) == ["--device", "auto", "--allow-cpu"]
    assert train_device_flags(cfg, 0) == ["--device", "cpu"]
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    assert demo["allow_cpu"] is True


def test_paper_job_without_gpu_stops_before_training(phantom_store: Path, tmp_path: Path) -> None:
    cfg = _paper_config()
    spec = method_spec_dict(cfg, "cyclegan")
    out = tmp_path / "run"
    res = _train(spec, phantom_store, out, train_device_flags(cfg, 1))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "found no GPU" in lines[0] and "allow_cpu" in lines[0]
    # nothing but the run folder's lock file (mrbench.training.locks.lock_run_folder)
    assert not out.exists() or [p.name for p in out.iterdir()] in ([], [".train.lock"])


def test_paper_job_runs_on_the_cpu_when_the_config_allows_it(
    phantom_store: Path, tmp_path: Path
) -> None:
    from mrbench_methods import get_plugin

    cfg = {**_paper_config(), "allow_cpu": True}
    spec = method_spec_dict(cfg, "cyclegan")
    # the paper's training section (150k steps, capped here by --max-steps) with networks small
    # enough for the 16 px test store
    spec["params"] = {**spec["params"], **get_plugin("cyclegan").tiny_params}
    out = tmp_path / "run"
    res = _train(spec, phantom_store, out, train_device_flags(cfg, 1))
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "model.pt").exists()
