"""``checkpoints/last.pt``: the resumable state of a run, written at ``checkpoint_every`` and
restored at start for the same spec and data only (a digest of the train and val stores is
recorded); otherwise the run stops, or starts afresh and says so (``restart_on_change``)."""

from __future__ import annotations

import time
from typing import Any

from mrbench.checkpoint import load_checkpoint, rng_state, save_checkpoint
from mrbench.domain import DEFAULT_PAIR
from mrbench.errors import InputError, TrainingError
from mrbench.finite import first_non_finite, module_non_finite
from mrbench.training.logs import losses_text
from mrbench.training.runs import Progress, Run, no_pending
from mrbench.training.schedules import EMA, LRSchedule
from mrbench.training.settings import RESUME_FREE_KEYS, TRAINING_DEFAULTS


def _spec_mismatch(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = []
    for key in ("method", "plugin", "params", "seed", "image_size"):
        if old.get(key) != new.get(key):
            diffs.append(key)
    # a checkpoint written before pairs existed was trained on T1w/T2w
    if list(old.get("pair", DEFAULT_PAIR)) != list(new.get("pair", DEFAULT_PAIR)):
        diffs.append("pair")
    t_old, t_new = old.get("training", {}), new.get("training", {})
    for key in sorted(set(t_old) | set(t_new)):
        default = TRAINING_DEFAULTS.get(key)  # a key newer than the checkpoint: its default
        if key not in RESUME_FREE_KEYS and t_old.get(key, default) != t_new.get(key, default):
            diffs.append(f"training.{key}")
    return diffs


def _upgrade_legacy(ck: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint written before the method contract became pair-neutral (its spec records no
    pair; trained on T1w/T2w): network, optimiser and EMA names that spell ``t1``/``t2`` renamed
    to ``a``/``b`` (:func:`mrbench_methods.base.upgrade_legacy_names`), so that it resumes."""
    if "pair" in (ck.get("spec") or {}):
        return ck
    from mrbench_methods.base import upgrade_legacy_names

    out = dict(ck)
    for key in ("method", "ema"):
        if isinstance(ck.get(key), dict):
            out[key] = upgrade_legacy_names(ck[key])
    return out


class Checkpoints:
    """``checkpoints/last.pt``: restore a run from it (resume) and write it; also removes
    ``best-step*.pt`` files that are no longer the best."""

    def __init__(self, run: Run, ema: EMA | None, schedule: LRSchedule, sampler: Any) -> None:
        self.run, self.ema, self.schedule, self.sampler = run, ema, schedule, sampler
        self.last = run.ckpt_dir / "last.pt"
        self.saved_step: int | None = None  # step of the newest last.pt (always a finite state)

    def stopped(self) -> str:
        """The end of a divergence message: where the last finite state is."""
        where = f"{self.last} (step {self.saved_step})" if self.saved_step is not None else "none"
        return f"stopped (last finite checkpoint: {where})"

    def restore(self, logs: tuple[Any, ...]) -> Progress:
        """Progress of the run so far: fresh (logs emptied) or loaded from ``last.pt`` (logs cut
        after its step); ``last.pt`` of another spec or other data: see :meth:`_resumable`."""
        ck = load_checkpoint(self.last) if self.last.exists() else None
        if ck is not None:
            ck = self._resumable(_upgrade_legacy(ck))
        if ck is None:
            for lg in logs:
                lg.truncate_after(-1)
            progress = Progress()
        else:
            self.run.method.load_full_state(ck["method"])
            if self.ema is not None:
                self.ema.load_state_dict(ck["ema"])
            self.schedule.load_state_dict(ck["schedule"])
            progress = Progress(
                int(ck["step"]),
                float(ck["elapsed"]),
                dict(ck["best"]),
                ck.get("log_pending", no_pending()),
                ck["rng"],
            )
            self.saved_step = progress.step
            for lg in logs:
                lg.truncate_after(progress.step)
            self.run.log(f"resuming from {self.last} at step {progress.step} of {self.run.steps}")
        self.prune(progress.best["file"])
        return progress

    def _resumable(self, ck: dict[str, Any]) -> dict[str, Any] | None:
        """``ck`` where it was written for this run's spec and trained on its data (the recorded
        digest of the train and val stores); else a one-line :class:`InputError`, or, under
        ``restart_on_change`` (the workflow's jobs), ``None``: start afresh, saying so, and
        remove the stale ``model.pt``. Resuming would export weights of the old spec or data,
        say of subjects that the split now holds out."""
        why = []
        diffs = _spec_mismatch(ck["spec"], self.run.resolved)
        if diffs:
            why.append(f"written for a different spec ({', '.join(diffs)} differ)")
        old, new = (ck.get("inputs") or {}).get("data"), self.run.inputs.get("data", "")
        if old != new:
            was = f"data digest {old[:12]}" if isinstance(old, str) else "no data digest"
            why.append(f"trained on other data ({was}, now {new[:12]})")
        # a diverged (or damaged) state: resuming would only diverge again, and later messages
        # would call it the last finite checkpoint
        bad = first_non_finite(ck.get("method")) or first_non_finite(ck.get("ema"), "ema")
        if bad:
            why.append(f"holds non-finite weights ({bad})")
        if not why:
            return ck
        if not self.run.restart_on_change:
            raise InputError(
                f"{self.last}: {'; '.join(why)}; delete the run folder, choose another --out "
                "or pass --restart-on-change"
            )
        self.run.log(f"{self.last} (step {ck['step']}): {'; '.join(why)}: starting afresh")
        if self.run.dist.is_main:
            (self.run.out_dir / "model.pt").unlink(missing_ok=True)
        return None

    def prune(self, keep: str) -> None:
        for f in self.run.ckpt_dir.glob("best-step*.pt") if self.run.dist.is_main else ():
            if f.name != keep:
                f.unlink()

    def save(self, progress: Progress, losses: dict[str, float] | None = None) -> None:
        if not self.run.dist.is_main:
            return
        bad = module_non_finite(self.run.method) or (
            self.ema is not None and first_non_finite(self.ema.state_dict(), "ema")
        )
        if bad:  # never overwrite the last finite state with a diverged one
            raise TrainingError(
                f"{self.run.name}: weights are non-finite at step {progress.step} ({bad}); "
                f"losses at step {progress.step}: {losses_text(losses or {})}; {self.stopped()}"
            )
        save_checkpoint(
            {
                "step": progress.step,
                "spec": self.run.resolved,
                "inputs": self.run.inputs,
                "method": self.run.method.full_state(),
                "ema": self.ema.state_dict() if self.ema is not None else {},
                "schedule": self.schedule.state_dict(),
                "sampler": self.sampler.state(progress.step),
                "rng": rng_state(),
                "best": progress.best,
                "elapsed": progress.elapsed + time.perf_counter() - self.run.t_start,
                "log_pending": progress.pending,
            },
            self.last,
        )
        self.saved_step = progress.step
        self.prune(progress.best["file"])
