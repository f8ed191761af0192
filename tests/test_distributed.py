"""Gradient averaging over processes reproduces one process on the whole batch (gloo, CPU)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mrbench.io import InputError
from mrbench.training.distributed import SINGLE, DistContext, ShardedPairSampler, from_env


class ToyGAN(nn.Module):
    """Two networks, two optimisers, frozen discriminator in the generator step, gradient
    clipping and gradient accumulation over two backward passes: what the methods do."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        # no bias before InstanceNorm: its true gradient is zero and Adam would turn the
        # round-off left in it into full-size steps that differ between the two runs
        self.g = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, bias=False),
            nn.InstanceNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 1, 3, padding=1),
        )
        self.d = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3))
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=1e-2)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=1e-2)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        self.d.requires_grad_(False)
        self.opt_g.zero_grad()
        fake = self.g(x)
        loss_g = ((self.d(fake) - 1) ** 2).mean() + (fake - y).abs().mean()
        loss_g.backward()
        nn.utils.clip_grad_norm_(self.g.parameters(), 0.05)
        self.opt_g.step()
        self.d.requires_grad_(True)
        self.opt_d.zero_grad()
        (0.5 * ((self.d(y) - 1) ** 2).mean()).backward()
        loss_d_fake = 0.5 * (self.d(fake.detach()) ** 2).mean()
        loss_d_fake.backward()
        self.opt_d.step()
        return {"g": loss_g.item(), "d_fake": loss_d_fake.item()}


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 1, 12, 12, generator=g), torch.randn(4, 1, 12, 12, generator=g)


def _worker(rank: int, world: int, rdv: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=world)
    ctx = DistContext(rank=rank, world_size=world, local_rank=rank, backend="gloo")
    model = ToyGAN()
    if rank == 1:  # a different init must be overwritten by process 0's weights
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
    ctx.prepare(model)
    x, y = _data()
    per = x.shape[0] // world
    losses = []
    for _ in range(3):
        shard = slice(rank * per, (rank + 1) * per)
        losses.append(ctx.mean_losses(model.train_step(x[shard], y[shard])))
    if rank == 0:
        torch.save(
            {"state": model.state_dict(), "losses": losses, "calls": ctx._averager.calls}, out
        )
    ctx.close()


def test_two_processes_match_one_process_on_the_global_batch(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    ref = ToyGAN()
    x, y = _data()
    ref_losses = [ref.train_step(x, y) for _ in range(3)]

    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "rdv"), str(out)), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    # three backward passes per step, each averaged with one all-reduce
    assert got["calls"] == 9
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(got["state"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    for a, b in zip(got["losses"], ref_losses, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7)


class _Batches:
    batch_size = 6

    def batch(self, k: int) -> list[tuple[int, int]]:
        return [(k * 10 + i, i) for i in range(self.batch_size)]

    def state(self, n: int) -> dict:
        return {"next_batch": n}


def test_sharded_sampler_splits_every_batch_into_equal_disjoint_parts() -> None:
    shards = [ShardedPairSampler(_Batches(), r, 3) for r in range(3)]
    for k in (0, 5):
        parts = [s.batch(k) for s in shards]
        assert [len(p) for p in parts] == [2, 2, 2]
        assert sum(parts, []) == _Batches().batch(k)
    assert shards[1].state(4) == {"next_batch": 4}
    with pytest.raises(InputError, match="training.batch_size: 6 is not divisible by the 4"):
        ShardedPairSampler(_Batches(), 0, 4)


def test_single_process_context_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = from_env("cpu")
    assert ctx is SINGLE and ctx.is_main and not ctx.enabled
    m = nn.Linear(2, 2)
    assert ctx.prepare(m) is m and ctx._averager is None
    s = _Batches()
    assert ctx.shard_sampler(s) is s
    assert ctx.mean_losses({"a": 1.5}) == {"a": 1.5}
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(InputError, match="WORLD_SIZE"):
        from_env("cpu")
    assert os.environ["WORLD_SIZE"] == "two"
