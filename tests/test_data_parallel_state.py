"""State outside the gradients in a data-parallel job: BatchNorm statistics (SyncBatchNorm on
CUDA), buffers a method updates itself (averaged over the processes after each step), and the
per-process batch share of methods that split their batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import brain_batch
from torch import nn

from mrbench.io import InputError
from mrbench.training.distributed import (
    DistContext,
    StepSyncBatchNorm,
    method_buffers,
    sync_batchnorm,
)
from mrbench.training.settings import resolve_training
from mrbench_methods import registry

SIZE = 32


def _tiny(plugin: str, seed: int = 0) -> nn.Module:
    cls = registry()[plugin]
    torch.manual_seed(seed)
    return cls(dict(cls.tiny_params), image_size=SIZE)


def _fake_collectives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist, "broadcast", lambda *a, **k: None)


# ------------------------------------------------------------------------------- BatchNorm
def test_cuda_data_parallel_turns_instaformers_discriminator_batchnorm_into_syncbatchnorm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_collectives(monkeypatch)
    method = _tiny("instaformer")
    bn_before = [m for m in method.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn_before, "InstaFormer's discriminator has BatchNorm layers"
    weights = {id(m.weight) for m in bn_before}
    ctx = DistContext(rank=0, world_size=2, local_rank=0, backend="nccl")  # what CUDA gets
    ctx.prepare(method)
    synced = [m for m in method.modules() if isinstance(m, StepSyncBatchNorm)]
    assert len(synced) == len(bn_before)
    assert not [m for m in method.modules() if type(m) is nn.BatchNorm2d]
    for d in ("D_a", "D_b"):
        assert any(isinstance(m, StepSyncBatchNorm) for m in getattr(method, d).modules())
    # the same Parameter objects: the method's optimisers still update them
    assert {id(m.weight) for m in synced} == weights
    opt_params = {
        id(p) for o in method.optimizers().values() for g in o.param_groups for p in g["params"]
    }
    assert weights <= opt_params
    ctx.close()


def test_gloo_keeps_batchnorm_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_collectives(monkeypatch)
    method = _tiny("instaformer")
    said: list[str] = []
    ctx = DistContext(rank=0, world_size=2, local_rank=0, backend="gloo")
    ctx.prepare(method, log=said.append)
    assert not [m for m in method.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(said) == 1 and "SyncBatchNorm needs CUDA" in said[0]
    ctx.close()
    one = DistContext()  # one process: nothing changes, nothing said
    one.prepare(_tiny("instaformer"), log=said.append)
    assert len(said) == 1


def test_step_sync_batchnorm_synchronises_only_inside_a_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3))
    ref = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3))
    ref.load_state_dict(net.state_dict())
    assert sync_batchnorm(net) == 1 and isinstance(net[1], StepSyncBatchNorm)
    x = torch.randn(4, 1, 8, 8)
    # outside a step (process 0 validating alone): plain BatchNorm, same numbers and statistics
    torch.testing.assert_close(net(x), ref(x))
    torch.testing.assert_close(net[1].running_mean, ref[1].running_mean)
    calls: list[int] = []

    def synced_forward(self: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        calls.append(inp.shape[0])
        return inp

    monkeypatch.setattr(nn.SyncBatchNorm, "forward", synced_forward)
    ctx = DistContext(rank=0, world_size=2, local_rank=0, backend="nccl")
    with ctx.step():
        net(x)
    assert calls == [4]
    net(x)  # after the step: plain again
    assert calls == [4]
    with DistContext().step():  # a one-process run never synchronises
        net(x)
    assert calls == [4]


# ------------------------------------------------------------------ buffers a method updates
PLUGINS = ("mguit", "stargan_v2", "drit")


def _worker(rank: int, world: int, rdv: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=world)
    ctx = DistContext(rank=rank, world_size=world, local_rank=rank, backend="gloo")
    result: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    for plugin in PLUGINS:
        method = _tiny(plugin)
        method.train()
        ctx.prepare(method)
        labels = bool(registry()[plugin].needs_labels)
        torch.manual_seed(100 + rank)  # per-process randomness, as decorrelate_rng gives
        before: dict[str, torch.Tensor] = {}
        for step in range(3):
            batch = brain_batch(10 * step + rank, 2, SIZE, labels=labels)  # this process's share
            with ctx.step():
                method.train_step(batch, step)
            before = {n: b.clone() for n, b in method_buffers(method)}
            ctx.sync_buffers(method)
        after = {n: b.clone() for n, b in method_buffers(method)}
        result[plugin] = {"before": before, "after": after}
    torch.save(result, f"{out}.{rank}")
    ctx.close()


def test_method_updated_buffers_stay_equal_across_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "bufs"
    mp.spawn(_worker, args=(2, str(tmp_path / "rdv"), str(out)), nprocs=2, join=True)
    r0, r1 = (torch.load(f"{out}.{r}", weights_only=True) for r in (0, 1))
    moving = {
        "mguit": ("memory.keys", "memory.values"),
        "stargan_v2": ("style_mean",),
        "drit": ("attr_mean_a", "attr_mean_b"),
    }
    for plugin, names in moving.items():
        for name in names:
            assert name in r0[plugin]["after"], (plugin, sorted(r0[plugin]["after"]))
            # each process's own update differs (its own share of the batch) ...
            assert not torch.equal(r0[plugin]["before"][name], r1[plugin]["before"][name])
            # ... and the synchronisation makes them equal: their average
            mean = (r0[plugin]["before"][name] + r1[plugin]["before"][name]) / 2
            if name == "memory.keys":
                mean = nn.functional.normalize(mean, dim=1)
            torch.testing.assert_close(r0[plugin]["after"][name], mean)
        for name, buf in r0[plugin]["after"].items():
            assert torch.equal(buf, r1[plugin]["after"][name]), (plugin, name)
    keys = r0["mguit"]["after"]["memory.keys"]
    torch.testing.assert_close(keys.norm(dim=1), torch.ones(keys.shape[0]))


# ------------------------------------------------------------------ per-process batch share
@pytest.mark.parametrize(
    ("plugin", "batch", "gpus", "ok"),
    [
        ("drit", 2, 2, False),  # one slice per process: no random half
        ("drit", 4, 2, True),
        ("drit", 6, 2, False),  # 3 per process: halves of 2 and 1
        ("stargan_v2", 8, 8, False),
        ("stargan_v2", 8, 4, True),
        ("stargan_v2", 8, 1, True),
        ("cyclegan", 2, 2, True),
        ("cyclegan", 3, 2, False),  # not divisible
    ],
)
def test_gpus_per_job_must_leave_each_process_a_share_the_method_can_split(
    plugin: str, batch: int, gpus: int, ok: bool
) -> None:
    cls = registry()[plugin]
    training = {"batch_size": batch, "gpus_per_job": gpus}
    if ok:
        assert resolve_training(cls, training)["gpus_per_job"] == gpus
    else:
        with pytest.raises(InputError, match=r"^training\.gpus_per_job: .*batch_size") as exc:
            resolve_training(cls, training)
        assert "\n" not in str(exc.value)
