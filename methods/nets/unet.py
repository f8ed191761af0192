"""The U-Net generator of pix2pix (Isola et al. 2017; Ronneberger et al. 2015).

``num_downs`` levels, each a 4x4 stride-2 convolution down and a 4x4 stride-2 transposed
convolution up; every level but the outermost returns its input concatenated with what it made,
so the decoder sees the encoder's features of the same resolution (skip connections). Channels,
from the outermost level inwards: ``ngf``, 2 ``ngf``, 4 ``ngf``, then 8 ``ngf`` for the rest.
Leaky ReLU 0.2 before every down-convolution but the first, ReLU before every up-convolution,
batch norm after every convolution except the first down-, the innermost down- and the outermost
up-convolution (which keeps its bias and ends in tanh); normalised convolutions have no bias.
Dropout 0.5 follows the decoder of the ``num_downs - 5`` levels just outside the innermost one
(the 512-channel ones at paper size).

``num_downs=8`` is the reference code's ``unet_256`` (256 px images reach 1x1 at the innermost
level); with ``ngf=64`` and one-channel input and output it has 54,407,809 parameters (54,413,955
for RGB). The reference code builds at least five levels; here ``num_downs`` may go down to 2
for small images (16 px: 4), keeping the first levels of the same channel plan, the innermost
level's layout and no dropout. Module names follow the reference implementation, so its weights
load unchanged: the generator's ``model`` is the outermost level, each level's ``model`` a
``Sequential`` holding the next level at index 1 (the outermost) or 3 (the others).
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(ch: int) -> nn.Module:
    return nn.BatchNorm2d(ch, affine=True, track_running_stats=True)


def _down(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False)


def _up(cin: int, cout: int, bias: bool = False) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=bias)


class UnetLevel(nn.Module):
    """One level: ``x -> [x, up(inner(down(x)))]`` (the outermost: ``up(inner(down(x)))``)."""

    def __init__(
        self,
        outer: int,
        inner: int,
        child: UnetLevel | None,
        in_ch: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.outermost = in_ch is not None
        if self.outermost:
            assert child is not None
            layers: list[nn.Module] = [
                _down(in_ch, inner),
                child,
                nn.ReLU(True),
                _up(2 * inner, outer, bias=True),
                nn.Tanh(),
            ]
        elif child is None:  # innermost: no norm at the bottleneck, nothing to concatenate
            layers = [nn.LeakyReLU(0.2, True), _down(outer, inner)]
            layers += [nn.ReLU(True), _up(inner, outer), _norm(outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), _down(outer, inner), _norm(inner), child]
            layers += [nn.ReLU(True), _up(2 * inner, outer), _norm(outer)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y if self.outermost else torch.cat([x, y], 1)


class UnetGenerator(nn.Module):
    """pix2pix's U-Net: ``num_downs`` (>= 2) levels, images of a multiple of ``2**num_downs``."""

    def __init__(
        self,
        in_ch: int = 1,
        out_ch: int = 1,
        num_downs: int = 8,
        ngf: int = 64,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if num_downs < 2:
            raise ValueError(f"UnetGenerator: num_downs must be >= 2, got {num_downs}")
        widths = [ngf * min(2**i, 8) for i in range(num_downs)]  # inner width, outermost first
        level: UnetLevel | None = None
        for i in range(num_downs - 1, 0, -1):  # innermost first
            drop = dropout if 4 <= i < num_downs - 1 else 0.0
            level = UnetLevel(widths[i - 1], widths[i], level, dropout=drop)
        self.model = UnetLevel(out_ch, widths[0], level, in_ch=in_ch)
        self.num_downs = num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
