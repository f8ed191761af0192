"""Validation during training (``val_every``) and the choice of the exported weights
(``select``): ``val_log.csv``, ``checkpoints/best-step<N>.pt`` and the selected weights."""

from __future__ import annotations

import math
import time
from typing import Any

from mrbench.checkpoint import legacy_state, read_model, save_model
from mrbench.errors import TrainingError
from mrbench.training.logs import fmt, losses_text, val_row
from mrbench.training.runs import Progress, Run
from mrbench.training.schedules import EMA, LRSchedule, ema_state


class Selection:
    """Validation during training and the choice of the exported weights.

    Every validation is logged (``val_log.csv``); a new best mean PSNR writes
    ``best-step<N>.pt``. :meth:`load_selected` loads the weights ``training.select`` names:
    ``best`` (that file) or ``last`` (the weights after the last step), EMA applied either way.
    """

    def __init__(self, run: Run, ema: EMA | None, schedule: LRSchedule, val_log: Any) -> None:
        self.run, self.ema, self.schedule, self.val_log = run, ema, schedule, val_log

    def validate(
        self, progress: Progress, losses: dict[str, float] | None = None, stopped: str = ""
    ) -> str:
        """Validate after ``progress.step`` steps; returns the message for the log. Non-finite
        scores stop training (``losses`` and ``stopped`` complete the message)."""
        run, done = self.run, progress.step
        scores = run.validate(self.ema) if run.dist.is_main else None
        scores = run.dist.broadcast(scores)
        if not math.isfinite(scores["psnr"]) or not math.isfinite(scores["ssim"]):
            raise TrainingError(
                f"{run.name}: validation at step {done} is non-finite (PSNR {scores['psnr']}, "
                f"SSIM {scores['ssim']}): the weights diverged; losses at step {done}: "
                f"{losses_text(losses or {})}; {stopped}"
            )
        cut = self.schedule.on_validation(scores["psnr"])
        now = progress.elapsed + time.perf_counter() - run.t_start
        lr = fmt(next(iter(self.schedule.current().values()), math.nan))
        self.val_log.write(val_row(done, now, scores) | {"lr": lr})
        msg = (
            f"step {done}/{run.steps}: val PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}"
        )
        if cut:
            msg += f"; lr x{run.training['lr_factor']} (plateau)"
        if scores["psnr"] > progress.best["psnr"]:
            name = f"best-step{done}.pt"
            meta = {"step": done, "val_psnr": scores["psnr"], "val_ssim": scores["ssim"]}
            if run.dist.is_main:
                save_model(run.record(ema_state(run.method, self.ema), meta), run.ckpt_dir / name)
            progress.best = {"psnr": scores["psnr"], "ssim": scores["ssim"], "step": done}
            progress.best["file"] = name
            msg += " (best)"
        return msg

    def load_selected(self, progress: Progress) -> dict[str, Any]:
        """Load the selected weights into the method; returns the selection's provenance."""
        run, best = self.run, progress.best
        best_file = run.ckpt_dir / best["file"] if best["file"] else None
        if run.training["select"] == "best" and best_file is not None:
            if not best_file.exists():  # never the last weights under the best step's scores
                raise TrainingError(
                    f"{best_file}: the best validation's weights (step {best['step']}, PSNR "
                    f"{best['psnr']:.2f} dB) are missing, so the selected model cannot be "
                    f"exported; delete {run.ckpt_dir / 'last.pt'} to train afresh"
                )
            run.method.load_state_dict(legacy_state(read_model(best_file)))
            selected = int(best["step"])
        else:
            run.method.load_state_dict(ema_state(run.method, self.ema))
            selected = run.steps
        return {
            "step": run.steps,
            "selected_step": selected,
            "select": run.training["select"],
            "val_psnr": best["psnr"],
            "val_ssim": best["ssim"],
            "val_best_step": best["step"],
            "train_seconds": progress.elapsed + time.perf_counter() - run.t_start,
        }
