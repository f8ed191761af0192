"""The ResNet image-to-image generator of CycleGAN (Johnson et al. 2016; Zhu et al. 2017).

Layout, as in the reference implementation (``ResnetGenerator`` with instance norm, no dropout):
reflection pad 3 + 7x7 conv to ``ngf`` channels, two stride-2 3x3 convolutions (``ngf`` -> 2
``ngf`` -> 4 ``ngf``), ``n_blocks`` residual blocks of two reflection-padded 3x3 convolutions at
4 ``ngf`` channels, two stride-2 transposed convolutions back to ``ngf``, reflection pad 3 + 7x7
conv to ``out_ch`` and tanh. Instance norm has no affine parameters, so every convolution keeps its
bias. With ``ngf=64`` and ``n_blocks=9`` on one-channel images this has 11,365,633 parameters
(the published 11.37 M); SynDiff's non-diffusive generator uses ``n_blocks=6``.

Images whose side is a multiple of 4 come back at their input size.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(ch: int) -> nn.Module:
    return nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """``x + conv(relu(norm(conv(x))))`` with reflection padding (no dropout)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3, bias=True),
            _norm(ch),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3, bias=True),
            _norm(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def encoder_layers(in_ch: int, ngf: int) -> list[nn.Module]:
    """The ResNet generator's stem: 7x7 conv to ``ngf``, two stride-2 convs to 4 ``ngf``."""
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(in_ch, ngf, 7, bias=True),
        _norm(ngf),
        nn.ReLU(True),
    ]
    ch = ngf
    for _ in range(2):
        layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=True), _norm(ch * 2)]
        layers.append(nn.ReLU(True))
        ch *= 2
    return layers


def upsampling_layers(ch: int) -> list[nn.Module]:
    """Two stride-2 transposed convs with instance norm and ReLU: ``ch`` -> ``ch // 4``."""
    layers: list[nn.Module] = []
    for _ in range(2):
        layers += [
            nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1),
            _norm(ch // 2),
            nn.ReLU(True),
        ]
        ch //= 2
    return layers


class ResnetGenerator(nn.Module):
    """ResNet generator: 7x7 in, 2 down, ``n_blocks`` residual blocks, 2 up, 7x7 out, tanh."""

    def __init__(self, in_ch: int = 1, out_ch: int = 1, ngf: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"ResnetGenerator: n_blocks must be >= 0, got {n_blocks}")
        layers = encoder_layers(in_ch, ngf)
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        layers += upsampling_layers(ngf * 4)
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7, bias=True), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
