"""Data-parallel training of one job on several GPUs (torchrun + torch.distributed).

The method contract lets a method own its optimisers and run all of its updates inside
``train_step`` (GANs alternate generator and discriminator steps, diffusion models add EMA
teachers...). Wrapping networks in ``DistributedDataParallel`` does not fit that contract: DDP
synchronises on the forward/backward pairs of a wrapped module, while a method calls the same
network in several losses per step and freezes parts of it in between. This module therefore
synchronises where the contract guarantees a common point: every gradient that a ``backward()``
accumulates into a parameter's ``.grad``.

:class:`GradientAverager` registers a post-accumulate-grad hook on every parameter of the method;
the first hook that fires in a backward pass queues a callback on the autograd engine, which runs
when that backward pass ends and averages the gradients accumulated in it over all processes with
one flat all-reduce (in a fixed parameter order). So, before the method's code after
``backward()`` runs (gradient clipping, ``optimizer.step()``), every process holds the gradient
of the global batch, exactly as with one process on the whole batch:

* the global batch (``training.batch_size``) is split into equal contiguous shards, one per
  process (:class:`ShardedPairSampler`); with losses that average over the batch, the mean of the
  shard gradients is the gradient of the global batch;
* gradients accumulated over several ``backward()`` calls stay correct: the part already averaged
  is identical on every process, and averaging is linear;
* ``torch.autograd.grad`` (gradient penalties) does not touch ``.grad`` and is not synchronised;
  its result feeds a loss whose ``backward()`` is.

State outside the gradients is kept equal too:

* BatchNorm layers (InstaFormer's and pix2pix's discriminators, pix2pix's U-Net) become
  :class:`StepSyncBatchNorm` on CUDA (:func:`sync_batchnorm`, in :meth:`DistContext.prepare`):
  inside a training step (:meth:`DistContext.step`) they normalise with the statistics of the
  global batch, as one process would; outside it (process 0 validates and exports alone) they
  act as plain BatchNorm. SyncBatchNorm needs CUDA: on the CPU (gloo) the layers stay BatchNorm
  with per-process batch statistics, and the run's log says so;
* buffers a method updates itself (running style/attribute means, MGUIT/HiFi-Syn memory items;
  every buffer that is not a BatchNorm statistic) are averaged over the processes after every
  step in which they changed on some process (:meth:`DistContext.sync_buffers`; boolean flags
  are OR-ed, integer buffers take process 0's value); a module may renormalise after that
  (``after_buffer_average``, e.g. unit-length memory keys). Averaged running means equal the
  single-process ones (the update is linear in the batch mean); memories are an average of the
  per-process updates, close to but not the same as one update from the global batch;
* methods that split each batch internally (DRIT++, StarGAN-v2) declare the multiple a
  per-process batch must be (``rank_batch_multiple``); the settings check refuses a
  ``gpus_per_job`` that leaves less.

Randomness inside a step (diffusion noise, time steps) differs per process
(:meth:`DistContext.decorrelate_rng`), so stochastic methods follow the single-process loss
curve statistically, deterministic ones to floating-point precision.

The process group comes from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``): NCCL on CUDA devices, gloo on the CPU. Without those variables
(or with ``WORLD_SIZE=1``) :func:`from_env` returns :data:`SINGLE`, whose methods do nothing, so a
one-process run takes exactly the same code path as before. Process 0 writes every file (logs,
checkpoints, the model); the trainer asks :attr:`DistContext.is_main`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from torch import nn

from mrbench.io import InputError


class GradientAverager:
    """Average over all processes the gradients each ``backward()`` accumulates into ``module``."""

    def __init__(self, module: nn.Module, world_size: int, group: Any = None) -> None:
        self.world_size = world_size
        self.group = group
        self.params: list[nn.Parameter] = []
        seen: set[int] = set()
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                self.params.append(p)
        self.index = {id(p): i for i, p in enumerate(self.params)}
        self.pending: set[int] = set()
        self.queued = False
        self.handles = []
        for p in self.params:
            was = p.requires_grad
            p.requires_grad_(True)  # hooks need it at registration; the method may freeze later
            self.handles.append(p.register_post_accumulate_grad_hook(self._on_grad))
            p.requires_grad_(was)
        self.calls = 0  # all-reduce calls (one per backward pass that touched the module)

    def _on_grad(self, p: torch.Tensor) -> None:
        self.pending.add(self.index[id(p)])
        if not self.queued:
            self.queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._flush)

    @torch.no_grad()
    def _flush(self) -> None:
        import torch.distributed as dist

        order = sorted(self.pending)
        self.pending.clear()
        self.queued = False
        grads = [self.params[i].grad for i in order]
        grads = [g for g in grads if g is not None]
        if not grads:
            return
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
        flat /= self.world_size
        for g, avg in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads), strict=True):
            g.copy_(avg)
        self.calls += 1

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


#: whether a data-parallel training step is running in this process (:meth:`DistContext.step`)
_IN_STEP = [False]


class StepSyncBatchNorm(nn.SyncBatchNorm):
    """SyncBatchNorm that synchronises only inside a training step, where every process runs
    the same forward passes; elsewhere (validation and export run on process 0 alone, e.g.
    pix2pix's generator in training mode) it is plain BatchNorm, which waits for no one."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (torch's name)
        if _IN_STEP[0]:
            return super().forward(input)
        return nn.modules.batchnorm._BatchNorm.forward(self, input)


def sync_batchnorm(module: nn.Module) -> int:
    """Replace every BatchNorm layer under ``module`` by :class:`StepSyncBatchNorm` in place
    (same parameters and running statistics, so optimisers keep working); returns how many."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(
            child, nn.SyncBatchNorm
        ):
            new = nn.SyncBatchNorm.convert_sync_batchnorm(child)
            new.__class__ = StepSyncBatchNorm
            module.add_module(name, new)
            count += 1
        else:
            count += sync_batchnorm(child)
    return count


def method_buffers(method: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The buffers a method may update itself: every buffer outside BatchNorm layers (whose
    statistics :class:`StepSyncBatchNorm` keeps), in a fixed order."""
    out = []
    for prefix, mod in method.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            continue
        for name, buf in mod.named_buffers(recurse=False):
            out.append((f"{prefix}.{name}" if prefix else name, buf))
    return out


class ShardedPairSampler:
    """This process's contiguous share of every global batch of a
    :class:`~mrbench.training.sampling.PairSampler`-like sampler (anything with ``batch(k) ->
    list`` and ``batch_size``); other attributes and ``state()`` are the wrapped sampler's, so
    checkpoints do not depend on the process count."""

    def __init__(self, sampler: Any, rank: int, world_size: int) -> None:
        bs = int(sampler.batch_size)
        if bs % world_size:
            raise InputError(
                f"training.batch_size: {bs} is not divisible by the {world_size} processes of a "
                "data-parallel job (training.gpus_per_job); each process takes an equal share"
            )
        self.inner = sampler
        self.rank, self.world_size = rank, world_size
        self.per_rank = bs // world_size

    def batch(self, k: int) -> list:
        full = self.inner.batch(k)
        return full[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class DistContext:
    """Rank and size of this job's process group; the default is one process (all no-ops)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    _averager: GradientAverager | None = field(default=None, repr=False)
    #: the method's buffers as last made equal (:meth:`sync_buffers` averages those that moved)
    _synced: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- setup ---------------------------------------------------------------------------------
    def device(self, requested: str | torch.device) -> torch.device:
        """The device of this process: ``cuda:<LOCAL_RANK>`` when CUDA is requested."""
        dev = torch.device(requested)
        if self.enabled and dev.type == "cuda":
            dev = torch.device("cuda", _cuda_index(self.local_rank, self.world_size))
            torch.cuda.set_device(dev)
        return dev

    def prepare(self, method: nn.Module, log: Callable[[str], None] | None = None) -> nn.Module:
        """Make every process start from process 0's weights and average gradients from now on;
        on CUDA, BatchNorm layers become :class:`StepSyncBatchNorm` (global batch statistics)."""
        if not self.enabled:
            return method
        import torch.distributed as dist

        if self.backend == "nccl":
            sync_batchnorm(method)
        elif any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in method.modules()):
            (log or (lambda msg: None))(
                "BatchNorm statistics stay per process: SyncBatchNorm needs CUDA "
                f"(backend {self.backend})"
            )
        with torch.no_grad():
            for t in [*method.parameters(), *method.buffers()]:
                if t.data.is_contiguous():
                    dist.broadcast(t.data, src=0)
                else:  # NCCL refuses a strided view (gloo takes it): send a dense copy
                    dense = t.data.contiguous()
                    dist.broadcast(dense, src=0)
                    t.data.copy_(dense)
        if self._averager is not None:
            self._averager.remove()
        self._averager = GradientAverager(method, self.world_size)
        self._synced = {n: b.detach().clone() for n, b in method_buffers(method)}
        return method

    @contextmanager
    def step(self) -> Iterator[None]:
        """Around one ``train_step``: :class:`StepSyncBatchNorm` layers synchronise inside it."""
        before = _IN_STEP[0]
        _IN_STEP[0] = self.enabled
        try:
            yield
        finally:
            _IN_STEP[0] = before

    @torch.no_grad()
    def sync_buffers(self, method: nn.Module) -> int:
        """Make the buffers that changed on some process since the last call equal again:
        floating ones averaged, boolean ones OR-ed, others process 0's; then each module's
        ``after_buffer_average()`` where present (e.g. renormalising). One small all-reduce
        when nothing changed; returns the number of buffers synchronised."""
        if not self.enabled:
            return 0
        import torch.distributed as dist

        bufs = method_buffers(method)
        if not bufs:
            return 0
        dev = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else None
        moved = [n not in self._synced or not torch.equal(b, self._synced[n]) for n, b in bufs]
        flags = torch.tensor(moved, dtype=torch.int32, device=dev)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        changed = [nb for nb, f in zip(bufs, flags.tolist(), strict=True) if f]
        for _, buf in changed:
            if buf.is_floating_point():
                t = buf.contiguous()
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
                buf.copy_(t / self.world_size)
            elif buf.dtype == torch.bool:
                t = buf.to(torch.uint8)
                dist.all_reduce(t, op=dist.ReduceOp.MAX)
                buf.copy_(t.bool())
            else:
                t = buf.contiguous()
                dist.broadcast(t, src=0)
                buf.copy_(t)
        if changed:
            for mod in method.modules():
                hook = getattr(mod, "after_buffer_average", None)
                if callable(hook):
                    hook()
        self._synced = {n: b.detach().clone() for n, b in method_buffers(method)}
        return len(changed)

    def shard_sampler(self, sampler: Any) -> Any:
        if not self.enabled:
            return sampler
        return ShardedPairSampler(sampler, self.rank, self.world_size)

    def decorrelate_rng(self, seed: int, step: int) -> None:
        """Give processes other than 0 their own random streams (noise, time steps) from
        ``(seed, rank, step)``; process 0 keeps the single-process stream."""
        if not self.enabled or self.rank == 0:
            return
        s = np.random.SeedSequence([int(seed), int(self.rank), int(step)]).generate_state(2)
        torch.manual_seed(int(s[0]))
        np.random.seed(int(s[1]))
        import random

        random.seed(int(s[1]))

    # -- communication -------------------------------------------------------------------------
    def mean_losses(self, losses: Mapping[str, float]) -> dict[str, float]:
        """The mean of each loss over all processes (the loss of the global batch)."""
        if not self.enabled:
            return dict(losses)
        import torch.distributed as dist

        keys = sorted(losses)
        t = torch.tensor([float(losses[k]) for k in keys], dtype=torch.float64)
        if self.backend == "nccl":
            t = t.cuda()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t = (t / self.world_size).cpu()
        return {k: float(v) for k, v in zip(keys, t.tolist(), strict=True)}

    def broadcast(self, obj: Any) -> Any:
        """Process 0's ``obj`` on every process (picklable objects)."""
        if not self.enabled:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if self.backend == "nccl":  # the device this process uses, as it sees it
                dist.barrier(device_ids=[_cuda_index(self.local_rank, self.world_size)])
            else:
                dist.barrier()

    def close(self) -> None:
        if self._averager is not None:
            self._averager.remove()
            self._averager = None
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


#: the context of a one-process run
SINGLE = DistContext()


def _cuda_index(local_rank: int, world_size: int) -> int:
    """CUDA device of a process: its local rank where the job's processes all see the job's
    GPUs (SLURM sets ``CUDA_VISIBLE_DEVICES`` to them), device 0 where each process was given
    its own GPU (:func:`mrbench.training.gpu.acquire_device` locks one per process on a
    workstation)."""
    return local_rank if torch.cuda.device_count() >= world_size else 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"environment variable {name}={value!r} is not an integer") from None


def from_env(device: str | torch.device = "cpu", timeout_s: float = 1800) -> DistContext:
    """The process group torchrun describes in the environment, initialised; :data:`SINGLE`
    outside torchrun. ``device`` picks the backend: NCCL for CUDA, gloo otherwise."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return SINGLE
    import torch.distributed as dist

    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    use_cuda = torch.device(device).type == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise InputError("a data-parallel job asked for CUDA, but no CUDA device is visible")
    backend = "nccl" if use_cuda else "gloo"
    ctx = DistContext(rank=rank, world_size=world, local_rank=local, backend=backend)
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(_cuda_index(local, world))
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return ctx


__all__ = [
    "DistContext",
    "GradientAverager",
    "SINGLE",
    "ShardedPairSampler",
    "StepSyncBatchNorm",
    "from_env",
    "method_buffers",
    "sync_batchnorm",
]
