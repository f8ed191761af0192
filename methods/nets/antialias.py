"""Anti-aliased resampling ("blur pooling", Zhang, ICML 2019), as CUT and InstaFormer use it.

Strided convolutions and pooling alias: a one-pixel shift of the input changes the output a lot.
The remedy low-pass filters before subsampling (and after zero-insertion when upsampling) with a
fixed binomial kernel, depthwise, so it adds no parameters. The kernels are outer products of
binomial rows: ``[1, 2, 1]`` for size 3 and ``[1, 3, 3, 1]`` for size 4, normalised to sum 1
(times ``stride^2`` for upsampling, which keeps a constant image constant).

- :class:`BlurDownsample`: reflection padding, 3x3 binomial blur, stride 2 (side ``H -> H/2``).
- :class:`BlurUpsample`: replicate padding, 4x4 binomial transposed convolution, stride 2, then
  cropped so that the side doubles exactly (``H -> 2H``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def binomial_kernel(size: int) -> torch.Tensor:
    """2-D binomial kernel of side ``size`` (1..7), normalised to sum 1."""
    if not 1 <= size <= 7:
        raise ValueError(f"binomial_kernel: size must be in 1..7, got {size}")
    row = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float32)
    kernel = row[:, None] * row[None, :]
    return kernel / kernel.sum()


class BlurDownsample(nn.Module):
    """Blur then subsample by 2: reflect pad, depthwise binomial ``filt_size`` kernel, stride 2."""

    def __init__(self, channels: int, filt_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride
        lo, hi = (filt_size - 1) // 2, math.ceil((filt_size - 1) / 2)
        self.pad = nn.ReflectionPad2d((lo, hi, lo, hi))
        kernel = binomial_kernel(filt_size)[None, None].repeat(channels, 1, 1, 1)
        # a constant of the architecture, rebuilt from the constructor: not saved in state dicts
        self.register_buffer("filt", kernel, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt.to(x.dtype), stride=self.stride, groups=x.shape[1])


class BlurUpsample(nn.Module):
    """Upsample by 2 with a blurring transposed convolution (replicate pad, 4x4 binomial kernel)."""

    def __init__(self, channels: int, filt_size: int = 4, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride
        self.odd = filt_size % 2 == 1
        self.pad_size = (filt_size - 1) // 2
        self.pad = nn.ReplicationPad2d(1)
        kernel = binomial_kernel(filt_size) * stride**2
        self.register_buffer("filt", kernel[None, None].repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv_transpose2d(
            self.pad(x),
            self.filt.to(x.dtype),
            stride=self.stride,
            padding=1 + self.pad_size,
            groups=x.shape[1],
        )[:, :, 1:, 1:]
        return out if self.odd else out[:, :, :-1, :-1]
