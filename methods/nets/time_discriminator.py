"""Time-conditioned discriminator of adversarial diffusion models (DD-GAN "large", used by SynDiff).

It judges a pair ``(x_t, x_{t+1})`` at timestep ``t``: is ``x_t`` a genuine one-step denoising of
``x_{t+1}`` (drawn from ``q(x_t | x_{t+1}, x0)`` with the true ``x0``) or one produced from the
generator's ``x0`` estimate? Layout:

- timestep embedding: sinusoidal of width ``t_emb_dim``, then ``dense - LeakyReLU - dense``, then
  LeakyReLU (applied once, before it is used);
- ``1x1`` conv of ``cat(x_t, x_{t+1})`` to ``2 ngf`` channels;
- ``n_down`` down-sampling residual blocks (LeakyReLU, 3x3 conv, + time bias, LeakyReLU, FIR
  ``[1, 3, 3, 1]`` downsampling, 3x3 conv; 1x1 conv skip on the downsampled input;
  ``(h + skip) / sqrt(2)``), widths ``4 ngf, 8 ngf, 8 ngf, ...`` (capped at ``max_mult * ngf``);
- minibatch standard deviation (StyleGAN; groups of up to 4 samples, one feature) appended as a
  channel, a 3x3 conv, LeakyReLU, a sum over pixels and a linear head to one logit per sample.

Paper size (``ngf=64``, ``t_emb_dim=256``, ``n_down=6`` at 256 px, two input channels) has about
27.74 M parameters. Smaller images need fewer down-sampling blocks (``image_size / 2^n_down``
should stay >= 2); every size is a constructor argument.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mrbench_methods.nets.ncsnpp import (
    conv2d,
    dense,
    fir_downsample_2d,
    fir_kernel_2d,
    timestep_embedding,
)


class DownConvBlock(nn.Module):
    """Residual block with a time bias and optional FIR downsampling."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        t_emb_dim: int,
        downsample: bool = True,
        negative_slope: float = 0.2,
        fir_taps: Sequence[float] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.conv1 = conv2d(in_ch, out_ch, 3)
        self.conv2 = conv2d(out_ch, out_ch, 3, init_scale=0.0)
        self.dense_t = dense(t_emb_dim, out_ch)
        self.skip = conv2d(in_ch, out_ch, 1, bias=False)
        self.downsample = downsample
        self.negative_slope = negative_slope
        self.register_buffer("fir", fir_kernel_2d(fir_taps), persistent=False)

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(x, self.negative_slope))
        h = h + self.dense_t(t_emb)[:, :, None, None]
        h = F.leaky_relu(h, self.negative_slope)
        if self.downsample:
            h = fir_downsample_2d(h, self.fir)
            x = fir_downsample_2d(x, self.fir)
        h = self.conv2(h)
        return (h + self.skip(x)) / math.sqrt(2.0)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, num_features: int = 1) -> torch.Tensor:
    """Append the per-group standard deviation of features as extra channels (StyleGAN).

    Samples are split into groups of ``min(group_size, B)``; when that does not divide the batch
    the largest divisor of ``B`` below it is used (the reference code would fail there).
    """
    b, c, h, w = x.shape
    group = min(group_size, b)
    while b % group:
        group -= 1
    y = x.reshape(group, -1, num_features, c // num_features, h, w)
    y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)  # (B/G, F, C/F, H, W)
    y = y.mean(dim=[2, 3, 4], keepdim=True).squeeze(2)  # (B/G, F, 1, 1)
    y = y.repeat(group, 1, h, w)
    return torch.cat([x, y], dim=1)


class TimeDiscriminator(nn.Module):
    """``D(x_t, t, x_{t+1}) -> logit`` (B, 1); see the module docstring."""

    def __init__(
        self,
        in_ch: int = 2,
        ngf: int = 64,
        t_emb_dim: int = 256,
        n_down: int = 6,
        max_mult: int = 8,
        negative_slope: float = 0.2,
        fir_taps: Sequence[float] = (1, 3, 3, 1),
        stddev_group: int = 4,
        stddev_feat: int = 1,
    ) -> None:
        super().__init__()
        if n_down < 1:
            raise ValueError(f"TimeDiscriminator: n_down must be >= 1, got {n_down}")
        self.t_emb_dim = t_emb_dim
        self.negative_slope = negative_slope
        self.stddev_group, self.stddev_feat = stddev_group, stddev_feat
        self.t_dense0 = dense(t_emb_dim, t_emb_dim)
        self.t_dense1 = dense(t_emb_dim, t_emb_dim)
        widths = [2 * ngf] + [ngf * min(2 ** (i + 2), max_mult) for i in range(n_down)]
        self.start_conv = conv2d(in_ch, widths[0], 1)
        self.blocks = nn.ModuleList(
            DownConvBlock(widths[i], widths[i + 1], t_emb_dim, True, negative_slope, fir_taps)
            for i in range(n_down)
        )
        ch = widths[-1]
        self.final_conv = conv2d(ch + stddev_feat, ch, 3)
        self.end_linear = dense(ch, 1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, x_tp1: torch.Tensor) -> torch.Tensor:
        slope = self.negative_slope
        t_emb = timestep_embedding(t, self.t_emb_dim)
        t_emb = self.t_dense1(F.leaky_relu(self.t_dense0(t_emb), slope))
        t_emb = F.leaky_relu(t_emb, slope)
        h = self.start_conv(torch.cat([x_t, x_tp1], dim=1))
        for block in self.blocks:
            h = block(h, t_emb)
        h = minibatch_stddev(h, self.stddev_group, self.stddev_feat)
        h = F.leaky_relu(self.final_conv(h), slope)
        return self.end_linear(h.sum(dim=[2, 3]))
