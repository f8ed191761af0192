"""Data-loader throughput against the training step's consumption.

The trainer reads batches of unpaired slices (T1 of one slice, T2 of another) from the
memory-mapped slice store through a torch DataLoader. This benchmark measures how many batches
per second that loader delivers (``num_workers`` 0 and 2, demo and paper image sizes) and
compares it with how many batches per second training consumes:

* measured here: one CycleGAN ``train_step`` (the fastest trainable method per image) with the
  demo's small networks at the same size and batch (a paper-size step on a CPU is slower still,
  so this is the stricter comparison);
* reference GPU: the per-image step cost :mod:`mrbench.config.resources` assumes for one datacentre
GPU.

``headroom`` = loader batches/s divided by consumed batches/s; above 1 the loader keeps up, and it
must stay well above 1 so that training never waits for data.

    python benchmarks/dataloader_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import synthetic_store, timed, write_table  # noqa: E402

DEMO_CYCLEGAN = {"ngf": 8, "ndf": 8, "n_blocks": 3, "n_layers_d": 2, "pool_size": 10}


def loader_rate(store_dir: Path, batch: int, workers: int, n_batches: int) -> float:
    """Batches per second the trainer's loader delivers (after worker start-up)."""
    from torch.utils.data import DataLoader

    from mrbench.slices import SliceStore
    from mrbench.training.sampling import BatchIndices, PairDataset, PairSampler, collate

    store = SliceStore(store_dir)
    sampler = PairSampler(len(store), batch, paired=False, seed=0)
    loader = DataLoader(
        PairDataset(store),
        batch_sampler=BatchIndices(sampler, 0),
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
    )
    it = iter(loader)
    for _ in range(max(2, workers * 2)):  # warm up: workers started, first batches queued
        next(it)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    rate = n_batches / (time.perf_counter() - t0)
    del it, loader
    return rate


def train_step_seconds(size: int, batch: int, repeats: int) -> float:
    from mrbench_methods import get_plugin

    cls = get_plugin("cyclegan")
    torch.manual_seed(0)
    method = cls(DEMO_CYCLEGAN, image_size=size)
    method.train()
    x = {
        "a": torch.rand(batch, 1, size, size) * 2 - 1,
        "b": torch.rand(batch, 1, size, size) * 2 - 1,
        "mask_a": torch.ones(batch, 1, size, size),
        "mask_b": torch.ones(batch, 1, size, size),
    }
    step = iter(range(10**6))
    return timed(lambda: method.train_step(x, next(step)), repeats=repeats, warmup=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches and repeats")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from mrbench.config.resources import plugin_seconds_per_image_256

    cases = [(32, 4), (256, 4)]  # (image size, batch): demo and paper sizes
    n_batches = 50 if args.quick else 300
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, batch in cases:
            store = synthetic_store(Path(tmp) / f"s{size}", n=400 if size > 64 else 2000, size=size)
            step_s = train_step_seconds(size, batch, repeats=2 if size > 64 else 5)
            ref_cost = plugin_seconds_per_image_256({"plugin": "cyclegan"})
            ref_step_s = ref_cost * (size / 256) ** 2 * batch
            for workers in (0, 2):
                rate = loader_rate(store, batch, workers, n_batches)
                rows.append(
                    {
                        "image_size": size,
                        "batch": batch,
                        "workers": workers,
                        "loader_batches_per_s": rate,
                        "loader_ms_per_batch": 1000 / rate,
                        "cpu_step_ms": step_s * 1000,
                        "headroom_cpu": rate * step_s,
                        "ref_gpu_step_ms": ref_step_s * 1000,
                        "headroom_ref_gpu": rate * ref_step_s,
                    }
                )
    write_table(
        "dataloader_throughput",
        rows,
        "Data loader vs training step (CycleGAN, the cheapest trainable method per image)",
    )
    worst = min(r["headroom_ref_gpu"] for r in rows)
    print(f"lowest headroom against the reference GPU step: {worst:.1f}x")
    return 0 if worst > 1 else 1


if __name__ == "__main__":
    sys.exit(main())
