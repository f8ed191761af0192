"""Training-time data augmentation, a trainer option (``training.augment``).

``resize_crop_flip`` is CycleGAN's ``--preprocess resize_and_crop`` with its random flip: each
slice is resized to ``round(augment_resize x size)`` pixels (286 for 256, the official
``--load_size 286 --crop_size 256``), a ``size x size`` window is cropped at a random place, and
the result is flipped left-right with probability 1/2. A slice's brain mask gets exactly the
same resize (nearest neighbour instead of linear), crop and flip, so masked losses and metrics
still line up. The T1 and the T2 slice of an unpaired batch item get independent draws.

Draws are a pure function of ``(seed, batch number, slice row, modality)``, never of a global
random state: a resumed run and a run with DataLoader workers see the same augmented batches,
and the same slice gets different crops in different epochs. ``none`` (the default) leaves
slices untouched; only methods whose published recipe augments turn it on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from mrbench.domain import MODALITIES

AUGMENTATIONS = ("none", "resize_crop_flip")
_STREAM = 1729  # separates the augmentation draws from the sampler's (seed, epoch) stream
_MODALITY = {"t1": 1, "t2": 2}


@dataclass(frozen=True)
class Augment:
    """Resize-crop-flip for one run (``resize`` = load size / crop size)."""

    resize: float
    seed: int

    def draw(self, size: int, batch: int, row: int, modality: str) -> tuple[int, int, bool]:
        """(top, left, flip) of one slice: its crop window in the resized image and the flip."""
        rng = np.random.default_rng([self.seed, _STREAM, batch, row, _MODALITY[modality]])
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

    def __call__(
        self, item: dict[str, torch.Tensor], batch: int, rows: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """Augment one training item (``t1``/``mask_t1`` from row ``rows[0]``, ``t2``/``mask_t2``
        from row ``rows[1]``); other keys (e.g. labels) follow their modality's mask."""
        out = dict(item)
        for modality, row in zip(MODALITIES, rows, strict=True):
            image = item[modality].numpy()[0]
            draw = self.draw(image.shape[-1], batch, row, modality)
            mask = item[f"mask_{modality}"].numpy()[0]
            image, mask = self.apply(image, mask, draw)
            out[modality] = torch.from_numpy(image.astype(np.float32))[None]
            out[f"mask_{modality}"] = torch.from_numpy(mask.astype(np.float32))[None]
            label = f"label_{modality}"
            if label in item:
                lab = self.warp(item[label].numpy()[0], draw, 0)
                out[label] = torch.from_numpy(lab)[None]
        return out


def augmenter(training: dict, seed: int) -> Augment | None:
    """The augmentation a resolved ``training`` section asks for, or None."""
    if training.get("augment", "none") == "none":
        return None
    return Augment(float(training.get("augment_resize", 286 / 256)), int(seed))
