"""The run's CSV logs: ``train_log.csv`` (:class:`StepLog`, with the optional progress bar) and
``val_log.csv`` rows (:func:`val_row`), written through :class:`CsvLog`."""

from __future__ import annotations

import csv
import resource
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrbench.io import atomic_path
from mrbench.training.runs import Progress, Run, no_pending
from mrbench.training.schedules import LRSchedule


class CsvLog:
    """Append-only CSV whose header grows if a new column appears (rewritten then)."""

    def __init__(self, path: Path, fixed: tuple[str, ...] = ("step",)) -> None:
        self.path = path
        self.fields: list[str] = list(fixed)
        if path.exists():
            with path.open(newline="") as f:
                header = next(csv.reader(f), None)
            if header:
                self.fields = header

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (by a run killed before its next checkpoint)."""
        if self.path.exists():
            self._rewrite([r for r in self.rows() if int(float(r["step"])) <= step])

    def write(self, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self.fields]
        if new or not self.path.exists():
            self.fields += new
            self._rewrite(self.rows())
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)


class NoLog:
    """Stands in for :class:`CsvLog` on data-parallel processes other than 0."""

    def truncate_after(self, step: int) -> None:
        pass

    def write(self, row: dict[str, Any]) -> None:
        pass


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def fmt(v: float) -> str:
    return f"{v:.6g}"


def losses_text(losses: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in losses.items()) or "none"


def every(done: int, n: int, steps: int) -> bool:
    """An interval event (log, validation, checkpoint) happens every ``n`` steps and at the end."""
    return done % n == 0 or done == steps


def val_row(step: int, seconds: float, scores: dict[str, float]) -> dict[str, Any]:
    return {"step": step, "seconds_elapsed": fmt(seconds)} | {k: fmt(v) for k, v in scores.items()}


class StepLog:
    """``train_log.csv`` rows (mean loss of each interval, learning rates, speed, memory) and
    the optional progress bar."""

    def __init__(
        self, run: Run, schedule: LRSchedule, log: Any, start: int, progress: bool | None
    ) -> None:
        self.run, self.schedule, self.log = run, schedule, log
        self.bar = None
        show = (sys.stderr.isatty() if progress is None else progress) and run.dist.is_main
        if show and start < run.steps:
            from tqdm import tqdm

            self.bar = tqdm(total=run.steps, initial=start, desc=run.name, dynamic_ncols=True)

    def add(self, progress: Progress, losses: dict[str, float], seconds: float) -> None:
        """Record one step's losses (``progress.step`` is the step just done)."""
        run, pending, done = self.run, progress.pending, progress.step
        for name, value in losses.items():
            pending["losses"].setdefault(name, []).append(float(value))
        pending["seconds"] += seconds
        pending["steps"] += 1
        if self.bar is not None:
            self.bar.update(1)
        if not every(done, int(run.training["log_every"]), run.steps):
            return
        lrs = self.schedule.current()
        row: dict[str, Any] = {"step": done}
        row |= {k: fmt(float(np.mean(v))) for k, v in pending["losses"].items()}
        row["lr"] = fmt(next(iter(lrs.values()))) if lrs else ""
        row |= {f"lr_{k}": fmt(v) for k, v in lrs.items()}
        row["sec_per_step"] = fmt(pending["seconds"] / pending["steps"])
        row["peak_mem_mb"] = fmt(_peak_mem_mb(run.device))
        self.log.write(row)
        if self.bar is not None:
            shown = dict(list(pending["losses"].items())[:4])
            self.bar.set_postfix({k: f"{np.mean(v):.3g}" for k, v in shown.items()})
        if run.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        progress.pending = no_pending()

    def say(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg)
        else:
            self.run.log(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
