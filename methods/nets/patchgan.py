"""The PatchGAN discriminator of pix2pix/CycleGAN (Isola et al. 2017).

With ``n_layers=3`` each output logit sees a 70x70 patch of the input: 4x4 convolutions, three of
stride 2 (``ndf``, 2 ``ndf``, 4 ``ndf`` channels) then one of stride 1 (8 ``ndf``) and a final
stride-1 convolution to one channel. Leaky ReLU 0.2, instance norm (no affine parameters) on all
but the first layer, biases everywhere as in the reference code. With ``ndf=64`` on one-channel
images this has 2,762,689 parameters (the published 2.76 M). The output is a map of raw scores
(no sigmoid): CycleGAN uses the least-squares GAN loss on it.

CUT and InstaFormer use the same network with two options: ``norm="batch"`` (BatchNorm with
affine parameters, so the normalised convolutions drop their biases) and ``antialias=True``
(each stride-2 convolution becomes a stride-1 convolution followed by a blur-pooling
downsample, :class:`mrbench_methods.nets.antialias.BlurDownsample`). With both and ``ndf=64`` on
one-channel images it has 2,763,585 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from mrbench_methods.nets.antialias import BlurDownsample


def receptive_field(n_layers: int) -> int:
    """Side of the input patch one output score sees (70 for ``n_layers=3``)."""
    rf = 1
    # layers from output to input: final conv (k4 s1), stride-1 conv (k4 s1), n_layers k4 s2
    for stride in [1, 1] + [2] * n_layers:
        rf = (rf - 1) * stride + 4
    return rf


class PatchDiscriminator(nn.Module):
    """``n_layers`` stride-2 4x4 convolutions + one stride-1 + a 1-channel score map."""

    def __init__(
        self,
        in_ch: int = 1,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
        antialias: bool = False,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"PatchDiscriminator: n_layers must be >= 1, got {n_layers}")
        if norm not in ("instance", "batch"):
            raise ValueError(f"PatchDiscriminator: norm {norm!r} is not 'instance'|'batch'")
        batch = norm == "batch"

        def norm_layer(ch: int) -> nn.Module:
            return nn.BatchNorm2d(ch) if batch else nn.InstanceNorm2d(ch)

        def down(cin: int, cout: int, bias: bool) -> list[nn.Module]:
            if antialias:
                return [nn.Conv2d(cin, cout, 4, stride=1, padding=1, bias=bias)]
            return [nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=bias)]

        layers: list[nn.Module] = [*down(in_ch, ndf, True), nn.LeakyReLU(0.2, True)]
        if antialias:
            layers.append(BlurDownsample(ndf))
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                *down(ndf * prev, ndf * mult, not batch),
                norm_layer(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
            if antialias:
                layers.append(BlurDownsample(ndf * mult))
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=not batch),
            norm_layer(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
