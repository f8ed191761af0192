"""The DDPM noise-prediction U-Net (Ho et al. 2020, the PixelCNN++-style backbone of their code).

Layout, for ``ch`` base channels and multipliers ``ch_mult`` (one resolution level each):

- timestep: sinusoidal embedding of width ``ch`` -> Linear(ch, 4ch) -> SiLU -> Linear(4ch, 4ch);
- 3x3 input convolution to ``ch``;
- down path: per level ``num_res_blocks`` residual blocks (self-attention after each block at the
  resolutions in ``attn_resolutions``), then a stride-2 3x3 convolution except at the last level;
- middle: residual block, attention, residual block;
- up path: per level ``num_res_blocks + 1`` residual blocks on the concatenated skip features
  (attention as on the way down), then nearest-neighbour x2 + 3x3 convolution except at level 0;
- GroupNorm, SiLU, 3x3 output convolution (zero-initialised) to ``out_ch``.

Residual block: GroupNorm-SiLU-conv3x3, + Linear(SiLU(temb)) added per channel,
GroupNorm-SiLU-dropout-conv3x3 (zero-initialised), 1x1 shortcut when the width changes.
Attention: single-head dot-product self-attention over all pixels, zero-initialised output
projection. GroupNorm uses 32 groups (fewer when a width is not divisible by 32).

DDPM's 256 px models use ``ch=128, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2``, attention
at 16 px; about 114 M parameters with 3-channel images. The input channel count is a parameter,
so a conditional denoiser takes ``[x_t, condition]`` stacked as channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoidal embedding of (float) timesteps, as in DDPM: ``[sin, cos]``."""
    half = dim // 2
    scale = math.log(10000.0) / max(half - 1, 1)
    freqs = torch.exp(-scale * torch.arange(half, device=t.device, dtype=torch.float32))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _groups(ch: int, max_groups: int = 32) -> int:
    for g in range(min(max_groups, ch), 0, -1):
        if ch % g == 0:
            return g
    return 1


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(_groups(ch), ch, eps=1e-6)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, temb_ch: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb_proj = nn.Linear(temb_ch, out_ch)
        self.norm2 = _norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None], v.transpose(1, 2)[:, None]
        )[:, 0]
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DDPMUNet(nn.Module):
    """``forward(x, t) -> eps`` for ``x`` of ``in_ch`` channels and integer timesteps ``t``."""

    def __init__(
        self,
        in_ch: int = 2,
        out_ch: int = 1,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.0,
        image_size: int = 256,
    ) -> None:
        super().__init__()
        ch_mult = tuple(int(m) for m in ch_mult)
        if not ch_mult or ch < 1 or num_res_blocks < 1:
            raise ValueError("DDPMUNet: need ch >= 1, num_res_blocks >= 1 and a non-empty ch_mult")
        factor = 2 ** (len(ch_mult) - 1)
        if image_size % factor:
            raise ValueError(
                f"DDPMUNet: image_size {image_size} is not divisible by 2^{len(ch_mult) - 1} "
                f"(ch_mult {ch_mult})"
            )
        self.ch = ch
        temb_ch = 4 * ch
        attn = {int(r) for r in attn_resolutions}
        self.temb = nn.Sequential(nn.Linear(ch, temb_ch), nn.SiLU(), nn.Linear(temb_ch, temb_ch))
        self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)

        self.down = nn.ModuleList()
        skips = [ch]
        cur, res = ch, image_size
        for level, mult in enumerate(ch_mult):
            out = ch * mult
            for _ in range(num_res_blocks):
                blocks = [ResBlock(cur, out, temb_ch, dropout)]
                if res in attn:
                    blocks.append(AttnBlock(out))
                self.down.append(nn.ModuleList(blocks))
                cur = out
                skips.append(cur)
            if level != len(ch_mult) - 1:
                self.down.append(nn.ModuleList([Downsample(cur)]))
                skips.append(cur)
                res //= 2

        self.mid = nn.ModuleList(
            [
                ResBlock(cur, cur, temb_ch, dropout),
                AttnBlock(cur),
                ResBlock(cur, cur, temb_ch, dropout),
            ]
        )

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(ch_mult))):
            out = ch * mult
            for _ in range(num_res_blocks + 1):
                blocks = [ResBlock(cur + skips.pop(), out, temb_ch, dropout)]
                if res in attn:
                    blocks.append(AttnBlock(out))
                self.up.append(nn.ModuleList(blocks))
                cur = out
            if level != 0:
                self.up.append(nn.ModuleList([Upsample(cur)]))
                res *= 2
        assert not skips
        self.norm_out = _norm(cur)
        self.conv_out = _zero(nn.Conv2d(cur, out_ch, 3, padding=1))

    @staticmethod
    def _run(blocks: nn.ModuleList, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        for b in blocks:
            h = b(h, temb) if isinstance(b, ResBlock) else b(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.temb(timestep_embedding(t, self.ch))
        hs = [self.conv_in(x)]
        for blocks in self.down:
            hs.append(self._run(blocks, hs[-1], temb))
        h = hs[-1]
        h = self.mid[0](h, temb)
        h = self.mid[1](h)
        h = self.mid[2](h, temb)
        for blocks in self.up:
            if isinstance(blocks[0], ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run(blocks, h, temb)
        return self.conv_out(F.silu(self.norm_out(h)))
