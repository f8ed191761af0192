"""The workflow runs on a real SLURM cluster through profiles/slurm (tests/slurm/start_cluster.sh).

Every rule except the local ones is submitted with sbatch, runs as a SLURM job (its job id shows up
in squeue as COMPLETED) and the demo tables appear. The cluster has no GPUs and no accounting
database: the run switches the gpu resource off (``gpu_resource=false``) and queries job states
with squeue. The workflow runs in a copy of the repository's workflow files under a temporary
folder, so it never touches ``results/`` of the working tree.

    bash tests/slurm/start_cluster.sh && MRBENCH_SLURM=1 pytest -m slurm tests/test_slurm.py

It runs only when asked (MRBENCH_SLURM=1, or MRBENCH_REQUIRE_SLURM=1 as in .ci/slurm.sh), so a
plain `pytest` never spends minutes on it. Without a cluster the test skips, naming why; with
MRBENCH_REQUIRE_SLURM=1 (CI) it fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slurm

#: the tiny test config when it exists, else the demo config (both on the phantom dataset)
CONFIGS = ("config/test.yaml", "config/demo.yaml")


def _cluster_problem() -> str | None:
    """Why the SLURM tests cannot run here, or None when a cluster answers."""
    for tool in ("sbatch", "squeue", "sinfo"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH (start a cluster with tests/slurm/start_cluster.sh)"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=15, check=False
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 15 s (is slurmctld running?)"
    states = out.stdout.split()
    if out.returncode != 0 or not states:
        return f"sinfo failed: {(out.stderr or out.stdout).strip()[:200]}"
    if not any(s.rstrip("*~#") in {"idle", "mix", "alloc"} for s in states):
        return f"no usable SLURM node (sinfo states: {', '.join(states)})"
    return None


def _workflow_copy(dest: Path) -> Path:
    """Copy what a workflow run reads (not results/ or resources/) into ``dest``."""
    needed = ("Snakefile", "workflow", "config", "profiles")
    missing = [p for p in needed if not (ROOT / p).exists()]
    if missing:
        pytest.skip(f"workflow not complete yet: {', '.join(missing)} missing")
    dest.mkdir(parents=True)
    shutil.copy2(ROOT / "Snakefile", dest / "Snakefile")
    ignore = shutil.ignore_patterns("__pycache__", ".snakemake")
    for folder in ("workflow", "config", "profiles", "envs"):
        if (ROOT / folder).exists():
            shutil.copytree(ROOT / folder, dest / folder, ignore=ignore)
    # an empty profile folder (an untracked leftover) would stop snakemake; git has none
    for profile in (dest / "profiles").iterdir():
        if profile.is_dir() and not any(profile.iterdir()):
            profile.rmdir()
    return dest


@pytest.fixture(scope="module")
def cluster() -> None:
    if not {"1"} & {os.environ.get("MRBENCH_SLURM"), os.environ.get("MRBENCH_REQUIRE_SLURM")}:
        pytest.skip("SLURM end-to-end run (minutes): set MRBENCH_SLURM=1 or run .ci/slurm.sh")
    problem = _cluster_problem()
    if problem and os.environ.get("MRBENCH_REQUIRE_SLURM") == "1":
        pytest.fail(f"MRBENCH_REQUIRE_SLURM=1 but no SLURM cluster: {problem}")
    if problem:
        pytest.skip(f"no SLURM cluster: {problem}")


def _job_states(job_ids: list[str]) -> dict[str, str]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i %T"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return dict(line.split(maxsplit=1) for line in out.stdout.splitlines() if line.strip())


def _groups(work: Path) -> list[str]:
    """``--groups`` that bundle the many short jobs into one SLURM job per stage (the data rules
    of data.smk; evaluation and report rules), halving the test's time: each SLURM job pays two
    Snakemake start-ups. Training jobs stay one SLURM job each, with their own resources."""
    stage = {"data.smk": "data", "evaluate.smk": "evaluation", "report.smk": "evaluation"}
    out = []
    for smk, group in stage.items():
        path = work / "workflow" / "rules" / smk
        if path.exists():
            text = path.read_text()
            names = re.findall(r"^rule (\w+):", text, re.M)
            names += re.findall(r"^use rule \w+ as (\w+)", text, re.M)
            # rules made in a loop (one per contrast set) take their name from a `name:` line
            names += re.findall(r'^\s+"(dataset_subject)"', text, re.M)
            out += [f"{r}={group}" for r in names]
    return out


#: the methods the SLURM run trains: the executor path (one SLURM job per training, grouped
#: data and evaluation jobs) is the same for every method, and the local end-to-end test
#: (tests/test_workflow.py) trains all of them; a floor, a GAN and the diffusion model with its
#: discriminators keep the SLURM step of CI within a few minutes
SLURM_METHODS = ("identity", "cyclegan", "disdiff")


def _slurm_subset(work: Path, configfile: str) -> str:
    """A copy of ``configfile`` with only :data:`SLURM_METHODS` (and the evaluation roles that
    name them)."""
    import yaml

    cfg = yaml.safe_load((work / configfile).read_text())
    cfg["methods"] = {m: e for m, e in cfg["methods"].items() if m in SLURM_METHODS}
    for entry in cfg["datasets"].values():  # T1w/T2w only: the local tiny run covers other pairs
        entry.pop("pairs", None)
    ev = cfg.get("evaluation") or {}
    for role in ("table1_methods", "ablation_methods", "method_order", "efficiency_pair"):
        if isinstance(ev.get(role), list):
            ev[role] = [m for m in ev[role] if m in cfg["methods"]]
    if len(ev.get("efficiency_pair") or []) != 2:
        ev.pop("efficiency_pair", None)  # a pair needs both of its methods
    if ev.get("reference_method") not in cfg["methods"]:
        ev.pop("reference_method", None)
    out = work / "config" / "slurm.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return "config/slurm.yaml"


def _slurm_env() -> dict[str, str]:
    env = dict(os.environ)
    # jobs inherit the submitting environment (sbatch --export=ALL): the venv's mrbench and python
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    for var in [v for v in env if v.startswith(("SLURM_", "SBATCH_"))]:
        env.pop(var)
    return env


#: what a cluster without an accounting database needs, and fast status checks for a test
SLURM_FLAGS = [
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "3",
    "--slurm-no-account",
    "--slurm-keep-successful-logs",
    "--latency-wait",
    "10",
]


def test_smoke_workflow_jobs_run_as_slurm_jobs(cluster: None, tmp_path: Path) -> None:
    """Three tiny rules (tests/slurm/smoke): each job records the SLURM job id it ran under."""
    work = tmp_path / "smoke"
    shutil.copytree(ROOT / "tests" / "slurm" / "smoke", work)
    cmd = [sys.executable, "-m", "snakemake", "--executor", "slurm", "--jobs", "2", *SLURM_FLAGS]
    proc = subprocess.run(
        cmd, cwd=work, env=_slurm_env(), capture_output=True, text=True, timeout=600, check=False
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake failed (rc {proc.returncode}):\n{log[-4000:]}"
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == 3, log[-3000:]
    ran_under = re.findall(r"job=(\S+)", (work / "out" / "merged.txt").read_text())
    assert sorted(ran_under) == sorted(submitted), "a job did not run under its SLURM job id"
    assert set(_job_states(submitted).values()) == {"COMPLETED"}


def test_demo_dag_runs_through_the_slurm_executor(cluster: None, tmp_path: Path) -> None:
    work = _workflow_copy(tmp_path / "wf")
    configfile = next((c for c in CONFIGS if (work / c).exists()), None)
    assert configfile is not None, f"none of {CONFIGS} exists"
    configfile = _slurm_subset(work, configfile)
    env = _slurm_env()
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        "profiles/slurm",
        "--configfile",
        configfile,
        "--config",
        "gpu_resource=False",
        *SLURM_FLAGS,
        "--retries",
        "0",
        "--jobs",
        "4",
        "--default-resources",
        "mem_mb=1000",
        "runtime=30",
    ]
    groups = _groups(work)
    if groups:
        cmd += ["--groups", *groups, "--group-components", "data=1000", "evaluation=1000"]
    proc = subprocess.run(
        cmd, cwd=work, env=env, capture_output=True, text=True, timeout=1500, check=False
    )
    log = proc.stdout + proc.stderr
    (tmp_path / "snakemake.log").write_text(log)
    assert proc.returncode == 0, f"snakemake failed (rc {proc.returncode}):\n{log[-6000:]}"

    # every submitted job ran under SLURM and completed
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert submitted, f"no job was submitted with sbatch:\n{log[-3000:]}"
    states = _job_states(submitted)
    assert states, "squeue does not know the submitted jobs (MinJobAge too low?)"
    bad = {j: s for j, s in states.items() if s != "COMPLETED"}
    assert not bad, f"SLURM jobs not completed: {bad}"

    # training jobs and the grouped stages ran as SLURM jobs (logs in .snakemake/slurm_logs)
    slurm_logs = work / ".snakemake" / "slurm_logs"
    kinds = {p.name for p in slurm_logs.iterdir() if p.is_dir()}
    assert "rule_train" in kinds, f"no training job on SLURM: {sorted(kinds)}"
    if groups:
        assert any(k.startswith("group_evaluation") for k in kinds), sorted(kinds)
    assert len(list(slurm_logs.rglob("*.log"))) == len(submitted)

    table = work / "results" / "tables" / "table1.csv"
    assert table.exists(), f"{table} missing after the run"
    lines = table.read_text().strip().splitlines()
    assert len(lines) >= 2, "table1.csv has no result rows"
