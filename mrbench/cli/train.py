"""``mrbench train``: train one method on one dataset's slice store, resumably.

The spec (a JSON string or a JSON file) is ``{"method": config name, "plugin": registered plugin,
"params": {...}, "training": {...}}`` (training keys: :mod:`mrbench.training.loop`); ``--pair A B``
names the two contrasts of the store to translate between (default ``t1 t2``). The device is
chosen before CUDA is touched (:mod:`mrbench.training.gpu`): a free, locked GPU, the scheduler's
choice, or the CPU. Re-running the same command after a crash resumes from ``checkpoints/last.pt``;
``model.pt`` is written last, so a workflow manager never sees a half-finished output. The run
folder has one writer: a second trainer on the same ``--out`` stops at once, naming the pid of
the one that holds it (:func:`mrbench.training.locks.lock_run_folder`).

Started by torchrun (``WORLD_SIZE`` > 1, see ``training.gpus_per_job``), every process runs
this command and joins the job's process group (:mod:`mrbench.training.distributed`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from mrbench.io import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", required=True, help="method spec: a JSON string or a JSON file")
    parser.add_argument(
        "--data", required=True, help="slice store folder with train/ and val/ splits"
    )
    parser.add_argument("--out", required=True, help="run folder (model.pt, logs, checkpoints)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument(
        "--pair",
        nargs=2,
        metavar=("A", "B"),
        default=["t1", "t2"],
        help="the two contrasts to translate between, domain a first (default: t1 t2); the"
        " slice store must hold both",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: a free GPU, else the CPU if --allow-cpu (default auto)",
    )
    parser.add_argument(
        "--allow-cpu",
        action="store_true",
        help="with --device auto, train on the CPU when no GPU is found instead of stopping"
        " (the config's allow_cpu)",
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="cap training.steps (quick runs and tests)"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument(
        "--restart-on-change",
        action="store_true",
        help="start afresh when --out holds a checkpoint of another spec or other train/val"
        " data, instead of stopping (the workflow's jobs)",
    )
    parser.add_argument(
        "--gpu-wait",
        type=float,
        default=600.0,
        help="seconds to wait for a free GPU when all are locked by other jobs (default 600:"
        " an evaluation job may hold one briefly)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )


def load_spec(text: str) -> dict[str, Any]:
    """Parse ``--spec``: inline JSON if it starts with ``{``, else the path of a JSON file."""
    source = "--spec"
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.exists():
            raise InputError(f"{path}: spec file not found")
        source, text = str(path), path.read_text()
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(spec, dict):
        raise InputError(f"{source}: expected a JSON object")
    for key in ("params", "training"):
        if spec.get(key) is None:
            spec[key] = {}
        if not isinstance(spec[key], dict):
            raise InputError(f"{source}: {key!r} must be an object")
    return spec


def cpu_fallback_refused(args: argparse.Namespace, device: str, spec: dict[str, Any]) -> bool:
    """``--device auto`` fell back to the CPU for a trainable method without ``--allow-cpu``:
    a run sized for GPUs would take weeks, which is never what was meant."""
    return args.device == "auto" and device == "cpu" and not args.allow_cpu and _trained(spec)


def _trained(spec: dict[str, Any]) -> bool:
    """Whether the spec's method is trained (the spec's ``trainable``, else the plugin's trait):
    a method fitted once (a lookup table, nothing) runs on the CPU under ``--device auto`` and
    takes no GPU. An unknown plugin counts as trained; loading the spec reports it."""
    if "trainable" in spec:
        return bool(spec["trainable"])
    try:
        from mrbench_methods.base import get_plugin

        return bool(get_plugin(str(spec.get("plugin"))).trainable)
    except KeyError:
        return True


def collective_timeout_s(spec: dict[str, Any], data: str | Path) -> float:
    """How long a process of a data-parallel job waits in a collective before the job is
    aborted: process 0 validates alone while the others wait for its result, and one paper-size
    validation of a diffusion sampler takes hours (:func:`mrbench.config.resources.
    validation_minutes`), so three validations' time, and never less than 30 minutes."""
    from mrbench.config.resources import validation_minutes
    from mrbench.training.settings import TRAINING_DEFAULTS

    size = 256
    with contextlib.suppress(Exception):  # no store yet: the trainer reports it
        from mrbench.slices import SliceStore

        size = SliceStore(Path(data) / "val").size
    full = {**spec, "training": {**TRAINING_DEFAULTS, **spec.get("training", {})}}
    try:
        minutes = validation_minutes(full, size)
    except ValueError:
        minutes = 0.0
    return max(1800.0, 3 * 60 * minutes)


def run(args: argparse.Namespace) -> int:
    from mrbench import pairs
    from mrbench.training import locks

    spec = load_spec(args.spec)
    try:
        args.pair = pairs.check_pair(args.pair)
    except ValueError as exc:
        print(f"mrbench train: error: --pair: {exc}", file=sys.stderr)
        return 1
    if "LOCAL_RANK" in os.environ:  # a torchrun worker: end with the launcher, locks included
        locks.die_with_parent()
    run_lock = None
    # one writer per run folder (process 0 of a data-parallel job writes for all)
    if int(os.environ.get("RANK", "0")) == 0:
        try:
            run_lock = locks.lock_run_folder(args.out)
        except locks.LockError as exc:
            print(f"mrbench train: error: {exc}", file=sys.stderr)
            return 1
    try:
        return _run_locked(args, spec)
    finally:
        if run_lock is not None:
            locks.release(run_lock)


def _run_locked(args: argparse.Namespace, spec: dict[str, Any]) -> int:
    from mrbench.training import gpu

    try:
        if args.device == "auto" and not _trained(spec):
            slot = gpu.DeviceSlot("cpu", None, None, "device: cpu (fitted, not trained)")
        else:
            slot = gpu.acquire_device(args.device, wait_s=args.gpu_wait)
    except RuntimeError as exc:
        print(f"mrbench train: error: {exc}", file=sys.stderr)
        return 1
    if cpu_fallback_refused(args, slot.device, spec):
        print(
            f"mrbench train: error: --device auto found no GPU ({slot.message}); a paper-size "
            "run on the CPU is not started: set allow_cpu: true in the config (or pass "
            "--allow-cpu or --device cpu)",
            file=sys.stderr,
        )
        return 1

    import torch

    from mrbench.errors import TrainingError
    from mrbench.training import distributed
    from mrbench.training.loop import train

    if args.threads:
        torch.set_num_threads(args.threads)
    if slot.device == "cuda" and not torch.cuda.is_available():
        print(f"mrbench train: error: {slot.message}, but torch sees no CUDA", file=sys.stderr)
        return 1
    dist = distributed.from_env(slot.device, collective_timeout_s(spec, args.data))
    try:
        train(
            spec,
            args.data,
            args.out,
            args.seed,
            dist.device(slot.device),
            max_steps=args.max_steps,
            restart_on_change=args.restart_on_change,
            progress=args.progress,
            device_message=slot.message,
            dist=dist,
            pair=args.pair,
        )
    except TrainingError as exc:
        print(f"mrbench train: error: {exc}", file=sys.stderr)
        return 1
    finally:
        dist.close()
    return 0
