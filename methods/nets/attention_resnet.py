"""AttentionGAN v2's generator (Tang et al., TNNLS 2021; official ``ResnetGenerator_our``).

A ResNet encoder (the CycleGAN stem and ``n_blocks`` residual blocks at 4 ``ngf`` channels, as
in :mod:`mrbench_methods.nets.resnet`) feeds two decoders with the CycleGAN upsampling layout:

- content decoder: two transposed convs (2 ``ngf`` -> ``ngf``), reflect-padded 7x7 conv to
  ``n_candidates`` x ``out_ch`` channels, tanh: ``n_candidates`` (9) candidate images;
- attention decoder: the same two transposed convs, a 1x1 conv to ``n_candidates + 1`` (10)
  channels and a softmax over them: one mask per candidate plus one for the input.

Output = sum_i candidate_i x mask_i + input x mask_last. The official code hard-codes three
channels per candidate (a one-channel input then gives a three-channel output); here each
candidate has ``out_ch`` channels and every mask is broadcast to them, which is what the
official code does for RGB. At ``ngf=64``, 9 blocks and one channel this has 11,760,211
parameters (the published 11.76 M).
"""

from __future__ import annotations

import torch
from torch import nn

from mrbench_methods.nets.resnet import ResnetBlock, encoder_layers, upsampling_layers


class AttentionResnetGenerator(nn.Module):
    """Encoder, content decoder (candidates) and attention decoder (masks); see the module doc."""

    def __init__(
        self,
        in_ch: int = 1,
        out_ch: int = 1,
        ngf: int = 64,
        n_blocks: int = 9,
        n_candidates: int = 9,
    ) -> None:
        super().__init__()
        if in_ch != out_ch:
            raise ValueError(
                f"AttentionResnetGenerator: the input is blended into the output, so in_ch "
                f"({in_ch}) must equal out_ch ({out_ch})"
            )
        if n_candidates < 1:
            raise ValueError(
                f"AttentionResnetGenerator: n_candidates must be >= 1, got {n_candidates}"
            )
        ch = ngf * 4
        self.encoder = nn.Sequential(
            *encoder_layers(in_ch, ngf), *[ResnetBlock(ch) for _ in range(n_blocks)]
        )
        self.content = nn.Sequential(
            *upsampling_layers(ch),
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, n_candidates * out_ch, 7),
            nn.Tanh(),
        )
        self.attention = nn.Sequential(*upsampling_layers(ch), nn.Conv2d(ngf, n_candidates + 1, 1))
        self.n_candidates = n_candidates
        self.out_ch = out_ch

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidates ``(B, n, C, H, W)`` and masks ``(B, n + 1, H, W)`` (summing to 1)."""
        h = self.encoder(x)
        b, _, height, width = x.shape
        candidates = self.content(h).view(b, self.n_candidates, self.out_ch, height, width)
        masks = torch.softmax(self.attention(h), dim=1)
        return candidates, masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        candidates, masks = self.parts(x)
        n = self.n_candidates
        return (candidates * masks[:, :n, None]).sum(1) + x * masks[:, n:]
