"""The data side of training: which slices make each batch, and how they reach the device.

:class:`PairSampler` turns a batch number into ``(a row, b row)`` pairs (``pairing``, resume
by batch count); :class:`BatchIndices` and :class:`PairDataset` feed it through a
:class:`~torch.utils.data.DataLoader` (``num_workers``, ``augment``); :func:`collate` stacks a
batch; :func:`one_pass` reads every slice once (for :meth:`fit`, :meth:`prepare_inference`).
Batches are :class:`mrbench.pairs.Batch` objects (neutral keys ``a``/``b``, the pair's contrast
names in ``.contrasts``) from the store to the method, through workers, collation and the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mrbench.domain import DEFAULT_PAIR
from mrbench.errors import InputError
from mrbench.pairs import Batch
from mrbench.slices import SliceStore
from mrbench.training.augment import Augment


class PairSampler:
    """Batch ``k`` of training -> list of ``(a row, b row)`` pairs, a pure function of
    ``(seed, k)``: epoch ``e`` draws one permutation of the rows for domain ``a`` and, unless
    paired, an independent one for ``b`` (``numpy.random.default_rng([seed, e])``). An
    incomplete last batch of an epoch is dropped. Resuming needs only the number of batches
    already consumed."""

    def __init__(self, n: int, batch_size: int, paired: bool, seed: int) -> None:
        if n < batch_size:
            raise InputError(f"training split has {n} slices, fewer than batch_size {batch_size}")
        self.n, self.batch_size, self.paired, self.seed = n, batch_size, paired, seed
        self.per_epoch = n // batch_size
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def _perms(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is None or self._cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            p1 = rng.permutation(self.n)
            p2 = p1 if self.paired else rng.permutation(self.n)
            self._cache = (epoch, p1, p2)
        return self._cache[1], self._cache[2]

    def batch(self, k: int) -> list[tuple[int, int]]:
        epoch, pos = divmod(k, self.per_epoch)
        p1, p2 = self._perms(epoch)
        sl = slice(pos * self.batch_size, (pos + 1) * self.batch_size)
        return [(int(i), int(j)) for i, j in zip(p1[sl], p2[sl], strict=True)]

    def state(self, next_batch: int) -> dict[str, Any]:
        return {
            "n": self.n,
            "batch_size": self.batch_size,
            "paired": self.paired,
            "seed": self.seed,
            "next_batch": next_batch,
        }


class BatchIndices(Sampler):
    """Batch ``k`` as ``(a row, b row, k)`` items: the batch number keys the augmentation."""

    def __init__(self, sampler: PairSampler, start: int) -> None:
        self.sampler, self.start = sampler, start

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        k = self.start
        while True:
            yield [(i, j, k) for i, j in self.sampler.batch(k)]
            k += 1


class PairDataset(Dataset):
    def __init__(self, store: SliceStore, augment: Augment | None = None) -> None:
        self.store, self.augment = store, augment

    def __len__(self) -> int:
        return len(self.store) ** 2

    def __getitem__(self, key: tuple[int, ...]) -> Batch:
        item = self.store.pair(key[0], key[1])
        if self.augment is not None:
            item = self.augment(item, key[2] if len(key) > 2 else 0, (key[0], key[1]))
        return item


def _contrasts(batch: Any) -> tuple[str, ...]:
    return tuple(getattr(batch, "contrasts", DEFAULT_PAIR))


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> Batch:
    """``batch`` on ``device``, still a :class:`~mrbench.pairs.Batch` of the same pair."""
    return Batch({k: v.to(device, non_blocking=True) for k, v in batch.items()}, _contrasts(batch))


def collate(items: list[dict[str, torch.Tensor]]) -> Batch:
    """Stack items into one :class:`~mrbench.pairs.Batch` (the first item's pair)."""
    # stacked by numpy: torch.stack runs on the intra-op thread pool, whose start-up cost per
    # call made batching the bottleneck of a loader in the training process (benchmarks/)
    return Batch(
        {k: torch.from_numpy(np.stack([it[k].numpy() for it in items])) for k in items[0]},
        _contrasts(items[0]),
    )


def one_pass(
    store: SliceStore, batch_size: int, paired: bool, seed: int, device: torch.device
) -> Iterator[Batch]:
    """Every slice of ``store`` once per domain, in batches (last one may be smaller), in a
    seeded random order: ``a`` rows in one permutation, ``b`` rows in an independent one (paired:
    the same). A consumer that stops early (the test-time mean codes stop after
    ``*_max_slices``) so sees a random, seeded subset of both domains, never the first
    subjects of the store."""
    n = len(store)
    rows1 = np.random.default_rng([seed, 6]).permutation(n)
    rows2 = rows1 if paired else np.random.default_rng([seed, 7]).permutation(n)
    for a in range(0, n, batch_size):
        items = [store.pair(int(rows1[i]), int(rows2[i])) for i in range(a, min(n, a + batch_size))]
        yield to_device(collate(items), device)
