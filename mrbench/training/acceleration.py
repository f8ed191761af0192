"""Training-loop speed switches that leave every method's function unchanged.

Three keys of the trainer's ``training`` section land here, so that no method plugin needs to
know about them:

``amp``
    bfloat16 autocast around the training step, on the CPU and on CUDA (:func:`autocast`);
    validation, ``prepare_inference`` and the test translation stay in float32, so the weights
    are selected and tested on the same outputs. Convolutions and matrix products run in
    bfloat16, reductions and losses that autocast keeps in float32 stay there; weights and
    optimiser states stay float32.
``optimizer_impl``
    ``fused`` (default): every Adam/AdamW a method lists runs torch's fused kernel, one pass
    over each parameter instead of a dozen elementwise operations per tensor (about 4x faster
    optimiser steps on the CPU); ``foreach``: the multi-tensor implementation; ``default``:
    whatever torch picks. All three compute the same update up to float rounding
    (:func:`use_optimizer_impl`); each is deterministic, so resumed runs stay bitwise identical.
``compile``
    ``false`` (default), ``true`` (torch.compile's default backend, inductor) or the name of a
    torch.compile backend: every network the method holds is compiled in place
    (:func:`compile_networks`; parameter names and checkpoints do not change). Networks called
    through other methods than ``forward`` (e.g. DisDiff's encoders) run uncompiled.
``memory_format``
    ``contiguous`` (default) or ``channels_last``: the layout of every 4-D weight of the method
    (:func:`use_memory_format`). With ``channels_last`` the convolutions run on NHWC tensors
    and hand NHWC activations on, so the step never reorders between layouts. On an idle
    2-core AMD EPYC it made 256 px steps slower (CycleGAN 1.14x, SynDiff 1.10x the contiguous
    step's time; benchmarks/README.md), hence off by default; on GPUs with tensor cores under
    ``amp`` NHWC is the usual choice (measure with benchmarks/gpu_check.sh). The values are the
    same, only the order in memory differs (outputs equal to float rounding; checkpoints load
    either way).
    Instance norms then normalise channels-last inputs as a group norm with one channel per
    group (:class:`ChannelsLastInstanceNorm2d`): torch's instance norm would copy them to the
    contiguous layout and back around every call.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

OPTIMIZER_IMPLS = ("fused", "foreach", "default")
MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` (CPU or CUDA) when ``enabled``, else a no-op context."""
    if enabled and device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _fusable(opt: torch.optim.Optimizer) -> bool:
    params = [p for g in opt.param_groups for p in g["params"]]
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") and not p.is_sparse
        for p in params
    )


def use_optimizer_impl(optimizers: dict[str, torch.optim.Optimizer], impl: str) -> list[str]:
    """Switch every Adam/AdamW in ``optimizers`` to ``impl``; returns the names switched.

    The choice lives in each parameter group (``fused``/``foreach`` flags read at every step),
    so it also survives ``load_state_dict`` of a checkpoint written by any implementation.
    """
    if impl not in OPTIMIZER_IMPLS:
        raise ValueError(f"optimizer_impl: expected one of {OPTIMIZER_IMPLS}, got {impl!r}")
    switched = []
    for name, opt in optimizers.items():
        if not isinstance(opt, torch.optim.Adam | torch.optim.AdamW):
            continue
        if impl == "fused" and not _fusable(opt):
            continue
        for group in opt.param_groups:
            if group.get("differentiable") or group.get("capturable"):
                break
            group["fused"] = impl == "fused"
            group["foreach"] = True if impl == "foreach" else None
        else:
            if impl == "fused":
                opt.defaults["fused"] = True
            switched.append(name)
    return switched


def _networks(module: nn.Module) -> list[nn.Module]:
    """Children with a ``forward`` of their own (containers are opened, recursively)."""
    out: list[nn.Module] = []
    for child in module.children():
        if isinstance(child, nn.ModuleDict | nn.ModuleList):
            out += _networks(child)
        elif any(True for _ in child.parameters()):
            out.append(child)
    return out


def compile_networks(method: nn.Module, setting: Any) -> int:
    """``torch.compile`` every network of ``method`` in place; returns how many were compiled.

    ``setting``: ``False``/``None`` (nothing), ``True`` (default backend) or a backend name.
    """
    if setting is False or setting is None:
        return 0
    kw = {} if setting is True else {"backend": str(setting)}
    nets = _networks(method)
    for net in nets:
        net.compile(**kw)
    return len(nets)


def _align_states(opt: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor its parameter's layout (fused Adam walks param,
    grad and moments as flat arrays, so a moment in another layout would be misread)."""
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for k, v in state.items():
                if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


class ChannelsLastInstanceNorm2d(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` that keeps a channels-last input channels-last.

    Instance norm without running statistics is group norm with one channel per group (same
    statistics, same biased variance, same ``eps``, same per-channel affine), and torch's group
    norm has a channels-last kernel. Other inputs take the plain path. No state of its own:
    ``use_memory_format`` swaps the class of existing modules, their state dicts are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.dim() == 4
            and not self.track_running_stats
            and x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous()
        ):
            return F.group_norm(x, x.shape[1], self.weight, self.bias, self.eps)
        return super().forward(x)


def use_memory_format(method: nn.Module, name: str) -> int:
    """Store every 4-D parameter and buffer of ``method`` in the layout ``name``, in place.

    Parameters keep their identity (optimisers and EMA copies made before still point at
    them); instance norms become :class:`ChannelsLastInstanceNorm2d` for ``channels_last``.
    The optimisers ``method.optimizers()`` lists get their states aligned now and after
    every ``load_state_dict`` (a checkpoint written in the other layout). Returns how many
    tensors were converted.
    """
    if name not in MEMORY_FORMATS:
        raise ValueError(f"memory_format: expected one of {tuple(MEMORY_FORMATS)}, got {name!r}")
    fmt = MEMORY_FORMATS[name]
    n = 0
    with torch.no_grad():
        for t in [*method.parameters(), *method.buffers()]:
            if t.dim() == 4 and not t.is_contiguous(memory_format=fmt):
                t.data = t.data.contiguous(memory_format=fmt)
                n += 1
    if fmt is torch.channels_last:
        for m in method.modules():
            if type(m) is nn.InstanceNorm2d and not m.track_running_stats:
                m.__class__ = ChannelsLastInstanceNorm2d
    optimizers = getattr(method, "optimizers", None)
    for opt in optimizers().values() if callable(optimizers) else ():
        _align_states(opt)
        if not getattr(opt, "_mrbench_layout_hook", False):
            opt.register_load_state_dict_post_hook(_align_states)
            opt._mrbench_layout_hook = True
    return n
