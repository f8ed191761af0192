"""Training-time data augmentation, a trainer option (``training.augment``).

``resize_crop_flip`` is CycleGAN's ``--preprocess resize_and_crop`` with its random flip: each
slice is resized to ``round(augment_resize x size)`` pixels (286 for 256, the official
``--load_size 286 --crop_size 256``), a ``size x size`` window is cropped at a random place, and
the result is flipped left-right with probability 1/2. A slice's brain mask gets exactly the
same resize (nearest neighbour instead of linear), crop and flip, so masked losses and metrics
still line up. The ``a`` and the ``b`` slice of an unpaired batch item (:mod:`mrbench.pairs`)
get independent draws; under
paired sampling (``pairing: paired``) both images of an item share one draw, so the pair stays
voxel-aligned (the reference pix2pix transforms its A and B images alike).

``random_resized_crop_flip`` is StarGAN-v2's loader (``core/data_loader.py``): with
probability 1/2 a random window of 80-100 % of the slice's area and aspect ratio 0.9-1.1
(torchvision's ``RandomResizedCrop``) is cut out and resized back to the slice size, then the
slice is flipped left-right with probability 1/2 (``RandomHorizontalFlip``, always in the
pipeline).

Draws are a pure function of ``(seed, batch number, slice row, domain)``, never of a global
random state: a resumed run and a run with DataLoader workers see the same augmented batches,
and the same slice gets different crops in different epochs. ``none`` (the default) leaves
slices untouched; only methods whose published recipe augments turn it on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from mrbench.domain import DEFAULT_PAIR
from mrbench.pairs import DOMAINS, Batch

AUGMENTATIONS = ("none", "resize_crop_flip", "random_resized_crop_flip")
_STREAM = 1729  # separates the augmentation draws from the sampler's (seed, epoch) stream
#: the draw stream of each domain (unpaired sampling); 1 and 2, as when the domains were named
#: t1 and t2, so the default pair's augmented batches are those of earlier runs
_DOMAIN_STREAM = {"a": 1, "b": 2}


@dataclass(frozen=True)
class Augment:
    """Resize-crop-flip for one run (``resize`` = load size / crop size)."""

    resize: float
    seed: int
    #: one draw for both images of an item (paired sampling: the same slice position)
    paired: bool = False

    def draw(self, size: int, batch: int, row: int, domain: str) -> tuple[int, int, bool]:
        """(top, left, flip) of one slice: its crop window in the resized image and the flip."""
        stream = 0 if self.paired else _DOMAIN_STREAM[domain]
        rng = np.random.default_rng([self.seed, _STREAM, batch, row, stream])
        load = max(size, int(round(self.resize * size)))
        top, left = (int(v) for v in rng.integers(0, load - size + 1, size=2))
        return top, left, bool(rng.random() < 0.5)

    def warp(self, arr: np.ndarray, draw: tuple[int, int, bool], order: int) -> np.ndarray:
        """Resize (spline ``order``: 1 linear for images, 0 nearest for masks and labels),
        crop and flip one 2-D array."""
        size = arr.shape[-1]
        load = max(size, int(round(self.resize * size)))
        top, left, flip = draw
        if load != size:
            zoom = (load / arr.shape[0], load / arr.shape[1])
            arr = ndimage.zoom(arr, zoom, order=order, mode="nearest", grid_mode=True)
        arr = arr[top : top + size, left : left + size]
        return np.ascontiguousarray(arr[:, ::-1] if flip else arr)

    def apply(
        self, image: np.ndarray, mask: np.ndarray, draw: tuple[int, int, bool]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The same resize, crop and flip on a 2-D image (linear) and its mask (nearest)."""
        return self.warp(image, draw, 1), self.warp(mask, draw, 0)

    def __call__(self, item: dict[str, torch.Tensor], batch: int, rows: tuple[int, int]) -> Batch:
        """Augment one training item (``a``/``mask_a`` from row ``rows[0]``, ``b``/``mask_b``
        from row ``rows[1]``); other keys (e.g. labels) follow their domain's mask. The item's
        ``contrasts`` (a :class:`~mrbench.pairs.Batch`) are kept."""
        out = Batch(item, getattr(item, "contrasts", DEFAULT_PAIR))
        for domain, row in zip(DOMAINS, rows, strict=True):
            image = item[domain].numpy()[0]
            draw = self.draw(image.shape[-1], batch, row, domain)
            mask = item[f"mask_{domain}"].numpy()[0]
            image, mask = self.apply(image, mask, draw)
            out[domain] = torch.from_numpy(image.astype(np.float32))[None]
            out[f"mask_{domain}"] = torch.from_numpy(mask.astype(np.float32))[None]
            label = f"label_{domain}"
            if label in item:
                lab = self.warp(item[label].numpy()[0], draw, 0)
                out[label] = torch.from_numpy(lab)[None]
        return out


@dataclass(frozen=True)
class RandomResizedCrop(Augment):
    """StarGAN-v2's augmentation: a random resized crop with probability ``p``, then a flip
    with probability 1/2. A draw is ``(top, left, height, width, flip)`` of the window."""

    p: float = 0.5
    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (0.9, 1.1)

    def draw(  # type: ignore[override]
        self, size: int, batch: int, row: int, domain: str
    ) -> tuple[int, int, int, int, bool]:
        stream = 0 if self.paired else _DOMAIN_STREAM[domain]
        rng = np.random.default_rng([self.seed, _STREAM, batch, row, stream])
        window = (0, 0, size, size)
        if rng.random() < self.p:
            window = self._window(rng, size)
        return (*window, bool(rng.random() < 0.5))

    def _window(self, rng: np.random.Generator, size: int) -> tuple[int, int, int, int]:
        """torchvision's ``RandomResizedCrop.get_params`` (ten tries, then the whole slice,
        since a ratio range around 1 always contains a square)."""
        area = size * size
        log_ratio = np.log(self.ratio)
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = float(np.exp(rng.uniform(*log_ratio)))
            w = int(round(np.sqrt(target * aspect)))
            h = int(round(np.sqrt(target / aspect)))
            if 0 < w <= size and 0 < h <= size:
                top = int(rng.integers(0, size - h + 1))
                left = int(rng.integers(0, size - w + 1))
                return top, left, h, w
        return 0, 0, size, size

    def warp(self, arr: np.ndarray, draw: tuple, order: int) -> np.ndarray:  # type: ignore[override]
        size = arr.shape[-1]
        top, left, h, w, flip = draw
        arr = arr[top : top + h, left : left + w]
        if (h, w) != (size, size):
            zoom = (size / h, size / w)
            arr = ndimage.zoom(arr, zoom, order=order, mode="nearest", grid_mode=True)
        return np.ascontiguousarray(arr[:, ::-1] if flip else arr)


def augmenter(training: dict, seed: int) -> Augment | None:
    """The augmentation a resolved ``training`` section asks for, or None."""
    kind = training.get("augment", "none")
    if kind == "none":
        return None
    paired = training.get("pairing", "unpaired") == "paired"
    if kind == "random_resized_crop_flip":
        return RandomResizedCrop(1.0, int(seed), paired)
    return Augment(float(training.get("augment_resize", 286 / 256)), int(seed), paired)
