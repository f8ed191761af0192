"""The ``intensity_map`` floor: a classical per-intensity regression fitted on training slices.

For each direction it learns a lookup table ``target = f(source)``: the source intensities of
brain voxels are binned, and each bin predicts the mean target intensity of the voxels that fall
in it (the conditional mean of the joint histogram), with empty bins filled by linear
interpolation. Background stays background.

It needs voxel correspondence between the two modalities, so it is fitted on the co-registered
training pairs (``t1`` and ``t2`` drawn from the same slice): a supervised floor. A deep
unpaired method that cannot beat a one-dimensional lookup table has not learned anatomy-aware
translation.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from mrbench_methods.base import DIRECTIONS, TranslationMethod, register, split_direction


@register("intensity_map")
class IntensityMap(TranslationMethod):
    display_name = "Intensity map"
    citation = "a 1-D intensity mapping fitted on the training set"
    family = "floor"
    defaults = {"bins": 128, "max_slices": 4000}
    trainable = False
    paired = True

    def __init__(self, params: dict | None = None, image_size: int = 64) -> None:
        super().__init__(params, image_size)
        bins = int(self.params["bins"])
        for d in DIRECTIONS:
            self.register_buffer(f"lut_{d}", torch.linspace(-1.0, 1.0, bins))

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        return {}

    def fit(self, slices: Iterator[dict[str, torch.Tensor]]) -> None:
        bins = int(self.params["bins"])
        sums = {d: torch.zeros(bins, dtype=torch.float64) for d in DIRECTIONS}
        counts = {d: torch.zeros(bins, dtype=torch.float64) for d in DIRECTIONS}
        seen = 0
        for batch in slices:
            mask = (batch["mask_a"] > 0.5) & (batch["mask_b"] > 0.5)
            for d in DIRECTIONS:
                src, dst = split_direction(d)
                # the tables accumulate on the CPU in float64, whatever device the batch is on
                s = batch[src][mask].double().cpu()
                t = batch[dst][mask].double().cpu()
                idx = self._bin(s, bins)
                sums[d].index_add_(0, idx, t)
                counts[d].index_add_(0, idx, torch.ones_like(t))
            seen += batch["a"].shape[0]
            if seen >= int(self.params["max_slices"]):
                break
        centres = torch.linspace(-1.0, 1.0, bins, dtype=torch.float64)
        for d in DIRECTIONS:
            filled = counts[d] > 0
            if not filled.any():
                raise ValueError("intensity_map: no brain voxels in the training slices")
            mean = sums[d][filled] / counts[d][filled]
            lut = _interp(centres, centres[filled], mean)
            getattr(self, f"lut_{d}").copy_(lut.float())

    @staticmethod
    def _bin(x: torch.Tensor, bins: int) -> torch.Tensor:
        return ((x.clamp(-1, 1) + 1) / 2 * (bins - 1)).round().long()

    def translate(self, x: torch.Tensor, direction: str) -> torch.Tensor:
        split_direction(direction)
        lut = getattr(self, f"lut_{direction}").to(x.device)
        out = lut[self._bin(x, lut.numel())]
        background = x <= -1 + 1e-6
        return torch.where(background, torch.full_like(out, -1.0), out)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``numpy.interp`` for 1-D tensors (constant extrapolation at both ends)."""
    idx = torch.searchsorted(xp, x).clamp(1, len(xp) - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    y0, y1 = fp[idx - 1], fp[idx]
    w = ((x - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0, 1)
    out = y0 + w * (y1 - y0)
    if len(xp) == 1:
        out = torch.full_like(x, fp[0].item())
    return out
