"""What changes the weights' trajectory besides the method: the learning-rate schedule
(``lr_schedule`` and its keys) and EMA weights (``ema_decay``); see :mod:`mrbench.training.loop`.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn


class LRSchedule:
    """One learning-rate rule for every parameter group of every optimiser (the ``lr_schedule``
    keys of :mod:`mrbench.training.loop`).

    Each optimiser gets a :class:`torch.optim.lr_scheduler.LambdaLR` whose per-group factor is
    the rule in closed form, a function of the step alone: :meth:`apply` sets the rate of any
    step, so a resumed run needs no replay of the steps before it. The plateau rule's
    bookkeeping (validations without a new best, the number of cuts) is kept here rather than
    in ``ReduceLROnPlateau``, which multiplies the current rates in place and so cannot share
    the closed-form factor the other rules use; its state is saved with the checkpoint.
    """

    def __init__(
        self, optimizers: dict[str, torch.optim.Optimizer], training: dict[str, Any]
    ) -> None:
        self.optimizers = optimizers
        self.kind = training["lr_schedule"]
        # a capped run keeps the schedule of its uncapped length (``steps_cap``)
        self.steps = max(1, int(training.get("schedule_steps") or training["steps"]))
        self.patience = int(training["lr_patience"])
        self.factor = float(training["lr_factor"])
        self.decay_start = float(training["lr_decay_start"])
        self.lr_min = float(training["lr_min"])
        self.base = {n: [float(g["lr"]) for g in o.param_groups] for n, o in optimizers.items()}
        self.reductions = 0
        self.best = -math.inf
        self.bad = 0
        self.schedulers = {
            n: torch.optim.lr_scheduler.LambdaLR(
                o, [self._factor_fn(base) for base in self.base[n]]
            )
            for n, o in optimizers.items()
        }

    def _factor_fn(self, base: float) -> Callable[[int], float]:
        """The multiplier of the initial rate ``base`` at a step, for :class:`LambdaLR`."""
        return lambda step: self.lr(base, step) / base if base else 1.0

    def lr(self, base: float, step: int) -> float:
        if self.kind == "constant":
            return base
        if self.kind == "plateau":
            return max(min(self.lr_min, base), base * self.factor**self.reductions)
        if self.kind == "linear":
            start = int(round(self.decay_start * self.steps))
            if step < start:
                return base
            return base * max(0.0, 1.0 - (step - start) / max(1, self.steps - start))
        # cosine
        floor = min(self.lr_min, base)
        return floor + (base - floor) * 0.5 * (
            1 + math.cos(math.pi * min(step, self.steps) / self.steps)
        )

    def apply(self, step: int) -> None:
        """Set the learning rates for training step ``step`` (0-based)."""
        with warnings.catch_warnings():
            # the rate of a step is set before its optimiser updates, by design (see above)
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            for scheduler in self.schedulers.values():
                scheduler.last_epoch = step - 1
                scheduler.step()  # advances to ``step`` and sets every group's rate

    def on_validation(self, metric: float) -> bool:
        """Plateau rule: record a validation metric (higher is better); True if lr was cut."""
        if self.kind != "plateau":
            return False
        if metric > self.best:
            self.best, self.bad = metric, 0
            return False
        self.bad += 1
        if self.bad >= self.patience:
            self.reductions += 1
            self.bad = 0
            return True
        return False

    def current(self) -> dict[str, float]:
        return {n: float(o.param_groups[0]["lr"]) for n, o in self.optimizers.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"reductions": self.reductions, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reductions = int(state["reductions"])
        self.best = float(state["best"])
        self.bad = int(state["bad"])


def _ema_avg_fn(decay: float) -> Callable[..., None]:
    """``multi_avg_fn`` of :class:`AveragedModel`: torch's EMA (``get_ema_multi_avg_fn``) for
    floating tensors; integer buffers (BatchNorm's step counter) are copied, not averaged."""
    ema = torch.optim.swa_utils.get_ema_multi_avg_fn(decay)

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: Any) -> None:
        if averaged[0].is_floating_point():
            ema(averaged, current, n)
        else:
            torch._foreach_copy_(averaged, current)

    return update


class EMA:
    """Exponential moving averages of whole modules (parameters and buffers), each kept by a
    :class:`torch.optim.swa_utils.AveragedModel`.

    The average starts from the weights at construction and every :meth:`update` blends the
    live weights in (``n_averaged`` starts at 1: ``AveragedModel`` would otherwise overwrite the
    average with the first update's weights). Checkpoints hold each averaged module's
    ``state_dict``, keyed like the live module's."""

    def __init__(self, modules: dict[str, nn.Module], decay: float) -> None:
        self.modules = modules
        self.decay = decay
        self.averaged = {
            name: torch.optim.swa_utils.AveragedModel(
                m, multi_avg_fn=_ema_avg_fn(decay), use_buffers=True
            )
            for name, m in modules.items()
        }
        for avg in self.averaged.values():
            avg.n_averaged.fill_(1)

    @torch.no_grad()
    def update(self) -> None:
        for name, m in self.modules.items():
            self.averaged[name].update_parameters(m)

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: avg.module.state_dict() for name, avg in self.averaged.items()}

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        for name, sd in state.items():
            self.averaged[name].module.load_state_dict(sd)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Temporarily load the averaged weights into the live modules."""
        backup = {
            name: {k: v.detach().clone() for k, v in m.state_dict().items()}
            for name, m in self.modules.items()
        }
        for name, m in self.modules.items():
            m.load_state_dict(self.averaged[name].module.state_dict())
        try:
            yield
        finally:
            for name, m in self.modules.items():
                m.load_state_dict(backup[name])


def ema_state(method: nn.Module, ema: EMA | None) -> dict[str, torch.Tensor]:
    """``method.state_dict()`` with the EMA weights in place of the averaged modules."""
    if ema is None:
        return {k: v.detach().clone() for k, v in method.state_dict().items()}
    with ema.applied():
        return {k: v.detach().clone() for k, v in method.state_dict().items()}
