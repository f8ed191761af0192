"""The PatchGAN discriminator of pix2pix/CycleGAN (Isola et al. 2017).

With ``n_layers=3`` each output logit sees a 70x70 patch of the input: 4x4 convolutions, three of
stride 2 (``ndf``, 2 ``ndf``, 4 ``ndf`` channels) then one of stride 1 (8 ``ndf``) and a final
stride-1 convolution to one channel. Leaky ReLU 0.2, instance norm (no affine parameters) on all
but the first layer, biases everywhere as in the reference code. With ``ndf=64`` on one-channel
images this has 2,762,689 parameters (the published 2.76 M). The output is a map of raw scores
(no sigmoid): CycleGAN uses the least-squares GAN loss on it.
"""

from __future__ import annotations

import torch
from torch import nn


def receptive_field(n_layers: int) -> int:
    """Side of the input patch one output score sees (70 for ``n_layers=3``)."""
    rf = 1
    # layers from output to input: final conv (k4 s1), stride-1 conv (k4 s1), n_layers k4 s2
    for stride in [1, 1] + [2] * n_layers:
        rf = (rf - 1) * stride + 4
    return rf


class PatchDiscriminator(nn.Module):
    """``n_layers`` stride-2 4x4 convolutions + one stride-1 + a 1-channel score map."""

    def __init__(self, in_ch: int = 1, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"PatchDiscriminator: n_layers must be >= 1, got {n_layers}")
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=True),
                nn.InstanceNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=True),
            nn.InstanceNorm2d(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
