"""NCSN++-style U-Net with adaptive group norm: the x0-predicting generator of SynDiff / DD-GAN.

The architecture of Song et al. (2021, NCSN++) as adapted by denoising diffusion GANs (Xiao et al.
2022) and used unchanged by SynDiff (Ozbey et al. 2023) for its diffusive generators:

- a sinusoidal (positional) embedding of the integer timestep, width ``nf``, then an MLP
  ``nf -> 4 nf -> 4 nf`` (64 -> 256 -> 256 at paper size);
- a latent ``z`` (``nz = 100``) through a mapping network - pixel norm, then ``1 + n_mlp`` linear
  layers with SiLU (4 layers, 100 -> 256 -> 256 -> 256 -> 256) - whose output drives *adaptive group
  norm* (per-channel scale and shift predicted from the code) in every residual block;
- BigGAN-style residual blocks (AdaGN, SiLU, 3x3 conv, + time bias, AdaGN, SiLU, dropout, 3x3
  conv; 1x1 skip when the shape changes; output ``(skip + h) / sqrt(2)``), with down- and
  up-sampling *inside* the blocks through the FIR filter ``[1, 3, 3, 1]``;
- ``num_res_blocks`` blocks per level, channel multipliers ``ch_mult``, self-attention blocks at
  the resolutions in ``attn_resolutions`` (16 px), a residual input pyramid (the input image
  FIR-downsampled with a 3x3 conv and added at each level, "progressive input = residual"),
  ``num_res_blocks + 1`` decoder blocks per level fed by skip connections, group norm + SiLU +
  3x3 conv out, and ``tanh``: the output is the estimate of ``x0`` in ``[-1, 1]``.

Initialisation: variance scaling (fan average, uniform) for every convolution and linear
layer, zero biases, and a (near-)zero scale for the last convolution of each residual block, of
each attention block and of the output layer, so that every block starts as an identity map.
The reference's initialiser is named fan_avg but scales by fan_out in practice, so initial
weight scales differ from the reference's (a stated deviation of SynDiff).

Paper size (SynDiff, 256 px, ``nf=64``, ``ch_mult=(1, 1, 2, 2, 4, 4)``, 2 blocks per level, two
input channels ``[x_{t+1}, source]``) has about 39.7 M parameters. Every size is a constructor
argument, so a demo model is the same code with smaller numbers.

Two optional conditioning paths serve models that build on this generator (DisDiff):

- ``cond_channels > 0``: a spatial feature map ``cond`` (B, cond_channels, h, w) passed to
  :meth:`NCSNpp.forward` is resized (bilinear, antialiased when shrinking) to the resolution of
  each encoder level in ``cond_levels`` (default: all), projected by a per-level 1x1 convolution
  to that level's width and added to the input of the level's first residual block;
- ``style_dim > 0``: a vector ``style`` (B, style_dim) is concatenated to the mapped latent, so
  it reaches every adaptive group norm. With ``nz = 0`` there is no latent and the style alone
  drives the norms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- init


def variance_scaling_(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Uniform variance-scaling init with fan average (``scale=0`` means 1e-10, as in NCSN++)."""
    scale = 1e-10 if scale == 0 else scale
    receptive = weight[0][0].numel() if weight.ndim > 2 else 1
    fan_in = weight.shape[1] * receptive
    fan_out = weight.shape[0] * receptive
    bound = math.sqrt(3.0 * scale / ((fan_in + fan_out) / 2.0))
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def conv2d(
    in_ch: int, out_ch: int, kernel: int = 3, init_scale: float = 1.0, bias: bool = True, **kw
) -> nn.Conv2d:
    """Conv with 'same' padding (unless given), variance-scaling weights and zero bias."""
    kw.setdefault("padding", kernel // 2)
    conv = nn.Conv2d(in_ch, out_ch, kernel, bias=bias, **kw)
    variance_scaling_(conv.weight, init_scale)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def dense(in_dim: int, out_dim: int, init_scale: float = 1.0) -> nn.Linear:
    lin = nn.Linear(in_dim, out_dim)
    variance_scaling_(lin.weight, init_scale)
    nn.init.zeros_(lin.bias)
    return lin


def group_norm(ch: int, affine: bool = True) -> nn.GroupNorm:
    """Group norm with ``min(ch // 4, 32)`` groups and eps 1e-6, as in NCSN++."""
    return nn.GroupNorm(max(1, min(ch // 4, 32)), ch, eps=1e-6, affine=affine)


# ---------------------------------------------------------------- FIR resampling


def fir_kernel_2d(taps: Sequence[float]) -> torch.Tensor:
    """Separable 2-D FIR kernel from 1-D taps, normalised to sum 1."""
    k = torch.as_tensor(list(taps), dtype=torch.float32)
    k2 = torch.outer(k, k)
    return k2 / k2.sum()


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Zero-insertion upsampling, padding, depthwise FIR filtering, keep every ``down``-th."""
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, groups=c)


def _depthwise(kernel: torch.Tensor, channels: int, x: torch.Tensor) -> torch.Tensor:
    """``kernel`` (kh, kw) as a depthwise weight (channels, 1, kh, kw) of ``x``'s dtype/device."""
    return kernel.to(device=x.device, dtype=x.dtype)[None, None].expand(channels, 1, *kernel.shape)


def fir_upsample_2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """FIR upsampling by ``factor`` (output ``factor`` x larger), gain preserved.

    Zero insertion followed by the FIR filter is one depthwise *transposed* convolution with
    stride ``factor``: it skips the multiplications by the inserted zeros (``factor^2`` fewer)
    and the padded copies of :func:`upfirdn2d`, with the same output up to float rounding
    (tests compare both paths). Shapes the transposed form does not cover fall back to it.
    """
    k = kernel * factor**2
    p = k.shape[0] - factor
    pad0, pad1 = (p + 1) // 2 + factor - 1, p // 2
    tpad = k.shape[0] - 1 - pad0
    square = k.ndim == 2 and k.shape[0] == k.shape[1]
    if square and tpad >= 0 and pad0 + pad1 == 2 * (k.shape[0] - 1 - tpad) - factor + 1:
        return F.conv_transpose2d(
            x, _depthwise(k, x.shape[1], x), stride=factor, padding=tpad, groups=x.shape[1]
        )
    return upfirdn2d(x, k, up=factor, pad=(pad0, pad1))


def fir_downsample_2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """FIR anti-aliased downsampling by ``factor``.

    A depthwise convolution with stride ``factor``; symmetric padding goes into the convolution
    itself (no padded copy of the input), otherwise :func:`upfirdn2d` pads first.
    """
    p = kernel.shape[0] - factor
    if p % 2 == 0 and p >= 0 and kernel.ndim == 2:
        weight = _depthwise(torch.flip(kernel, [0, 1]), x.shape[1], x)
        return F.conv2d(x, weight, stride=factor, padding=p // 2, groups=x.shape[1])
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def fir_blur_2d(x: torch.Tensor, kernel: torch.Tensor, pad: int) -> torch.Tensor:
    """FIR filtering with ``pad`` zeros on every side (the padding inside the convolution)."""
    weight = _depthwise(torch.flip(kernel, [0, 1]), x.shape[1], x)
    return F.conv2d(x, weight, padding=pad, groups=x.shape[1])


class FIRConvDown(nn.Module):
    """3x3 convolution with stride 2 preceded by the FIR blur (the input-pyramid downsampler)."""

    def __init__(self, in_ch: int, out_ch: int, fir_taps: Sequence[float]) -> None:
        super().__init__()
        self.conv = conv2d(in_ch, out_ch, 3, padding=0, stride=2)
        self.register_buffer("fir", fir_kernel_2d(fir_taps), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = (self.fir.shape[0] - 2) + (3 - 1)
        if p % 2 == 0:
            return self.conv(fir_blur_2d(x, self.fir, p // 2))
        return self.conv(upfirdn2d(x, self.fir, pad=((p + 1) // 2, p // 2)))


# ------------------------------------------------------------------------ blocks


def timestep_embedding(t: torch.Tensor, dim: int, max_positions: int = 10000) -> torch.Tensor:
    """Sinusoidal embedding ``[sin(t w_k), cos(t w_k)]`` of (integer or real) timesteps."""
    half = dim // 2
    freq = math.log(max_positions) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * -freq)
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class AdaptiveGroupNorm(nn.Module):
    """Group norm without affine parameters, then ``gamma(s) * x + beta(s)`` from a code ``s``."""

    def __init__(self, ch: int, style_dim: int) -> None:
        super().__init__()
        self.norm = group_norm(ch, affine=False)
        self.style = dense(style_dim, 2 * ch)
        with torch.no_grad():
            self.style.bias[:ch] = 1.0
            self.style.bias[ch:] = 0.0

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(style)[:, :, None, None].chunk(2, dim=1)
        return gamma * self.norm(x) + beta


class ResBlockBigGAN(nn.Module):
    """BigGAN-style residual block with AdaGN, time bias and optional FIR up/down sampling."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None,
        temb_dim: int,
        style_dim: int,
        up: bool = False,
        down: bool = False,
        dropout: float = 0.0,
        fir_taps: Sequence[float] = (1, 3, 3, 1),
        skip_rescale: bool = True,
    ) -> None:
        super().__init__()
        out_ch = out_ch or in_ch
        self.up, self.down, self.skip_rescale = up, down, skip_rescale
        self.norm0 = AdaptiveGroupNorm(in_ch, style_dim)
        self.conv0 = conv2d(in_ch, out_ch, 3)
        self.temb_proj = dense(temb_dim, out_ch)
        self.norm1 = AdaptiveGroupNorm(out_ch, style_dim)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = conv2d(out_ch, out_ch, 3, init_scale=0.0)
        self.skip = conv2d(in_ch, out_ch, 1) if (in_ch != out_ch or up or down) else None
        self.register_buffer("fir", fir_kernel_2d(fir_taps), persistent=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm0(x, style))
        if self.up:
            h = fir_upsample_2d(h, self.fir)
            x = fir_upsample_2d(x, self.fir)
        elif self.down:
            h = fir_downsample_2d(h, self.fir)
            x = fir_downsample_2d(x, self.fir)
        h = self.conv0(h)
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = F.silu(self.norm1(h, style))
        h = self.conv1(self.dropout(h))
        if self.skip is not None:
            x = self.skip(x)
        out = x + h
        return out / math.sqrt(2.0) if self.skip_rescale else out


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels (NIN = 1x1 projections), residual."""

    def __init__(self, ch: int, skip_rescale: bool = True) -> None:
        super().__init__()
        self.norm = group_norm(ch)
        self.q = conv2d(ch, ch, 1)
        self.k = conv2d(ch, ch, 1)
        self.v = conv2d(ch, ch, 1)
        self.proj = conv2d(ch, ch, 1, init_scale=0.0)
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q = self.q(h).flatten(2).transpose(1, 2)  # (B, HW, C)
        k = self.k(h).flatten(2).transpose(1, 2)
        v = self.v(h).flatten(2).transpose(1, 2)
        h = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v
        h = self.proj(h.transpose(1, 2).reshape(b, c, hh, ww))
        out = x + h
        return out / math.sqrt(2.0) if self.skip_rescale else out


# ------------------------------------------------------------------------ network


class NCSNpp(nn.Module):
    """x0-predicting U-Net ``G(x, t, z[, cond, style])``; see the module docstring.

    Args:
        in_ch: channels of the (concatenated) pixel input, e.g. 2 for ``[x_{t+1}, source]``.
        out_ch: channels of the ``x0`` estimate.
        image_size: training resolution; fixes which levels carry attention.
        nf: base width; ``ch_mult``: width multiplier per level (one level per resolution).
        num_res_blocks: residual blocks per encoder level (decoder levels get one more).
        attn_resolutions: resolutions (in pixels) with a self-attention block.
        dropout: dropout inside the residual blocks.
        fir_taps: 1-D taps of the resampling filter.
        skip_rescale: divide residual sums by sqrt(2).
        nz, z_emb_dim, n_mlp: latent size, mapped-latent size, extra mapping layers.
        input_pyramid: add the FIR-downsampled input at each encoder level (NCSN++ "residual").
        cond_channels, cond_levels: optional spatial condition (see module docstring).
        style_dim: optional style vector concatenated to the mapped latent.
        use_tanh: squash the output to ``[-1, 1]``.
    """

    def __init__(
        self,
        in_ch: int = 2,
        out_ch: int = 1,
        image_size: int = 256,
        nf: int = 64,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.0,
        fir_taps: Sequence[float] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        nz: int = 100,
        z_emb_dim: int = 256,
        n_mlp: int = 3,
        input_pyramid: bool = True,
        cond_channels: int = 0,
        cond_levels: Sequence[int] | None = None,
        style_dim: int = 0,
        use_tanh: bool = True,
    ) -> None:
        super().__init__()
        ch_mult = tuple(int(m) for m in ch_mult)
        n_levels = len(ch_mult)
        if n_levels < 1 or num_res_blocks < 1:
            raise ValueError("NCSNpp: need at least one level and one residual block per level")
        if image_size % 2 ** (n_levels - 1):
            raise ValueError(
                f"NCSNpp: image_size {image_size} is not divisible by 2^{n_levels - 1} "
                f"(ch_mult has {n_levels} levels)"
            )
        if nf < 4:
            raise ValueError(f"NCSNpp: nf must be >= 4 (group norm), got {nf}")
        code_dim = (z_emb_dim if nz > 0 else 0) + style_dim
        if code_dim <= 0:
            raise ValueError("NCSNpp: adaptive group norm needs nz > 0 or style_dim > 0")
        self.nf, self.nz, self.style_dim, self.cond_channels = nf, nz, style_dim, cond_channels
        self.num_res_blocks, self.n_levels = num_res_blocks, n_levels
        self.skip_rescale, self.use_tanh, self.input_pyramid = skip_rescale, use_tanh, input_pyramid
        self.resolutions = [image_size // 2**i for i in range(n_levels)]
        attn_at = {int(r) for r in attn_resolutions}
        temb_dim = 4 * nf

        # time embedding MLP (positional embedding of width nf -> 4nf -> 4nf)
        self.time_dense0 = dense(nf, temb_dim)
        self.time_dense1 = dense(temb_dim, temb_dim)
        # latent mapping network: pixel norm, 1 + n_mlp linear layers with SiLU
        if nz > 0:
            layers: list[nn.Module] = [PixelNorm(), dense(nz, z_emb_dim), nn.SiLU()]
            for _ in range(n_mlp):
                layers += [dense(z_emb_dim, z_emb_dim), nn.SiLU()]
            self.mapping: nn.Module | None = nn.Sequential(*layers)
        else:
            self.mapping = None

        def resblock(cin: int, cout: int | None = None, **kw) -> ResBlockBigGAN:
            return ResBlockBigGAN(
                cin, cout, temb_dim, code_dim, dropout=dropout, fir_taps=fir_taps,
                skip_rescale=skip_rescale, **kw,
            )  # fmt: skip

        def attn(ch: int) -> AttnBlock:
            return AttnBlock(ch, skip_rescale=skip_rescale)

        self.conv_in = conv2d(in_ch, nf, 3)
        skip_ch = [nf]
        ch = nf
        pyramid_ch = in_ch
        self.down_blocks = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.down_sample = nn.ModuleList()
        self.pyramid_down = nn.ModuleList()
        self.level_in_ch: list[int] = []
        for i, mult in enumerate(ch_mult):
            self.level_in_ch.append(ch)
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(resblock(ch, nf * mult))
                ch = nf * mult
                attns.append(attn(ch) if self.resolutions[i] in attn_at else nn.Identity())
                skip_ch.append(ch)
            self.down_blocks.append(blocks)
            self.down_attn.append(attns)
            if i != n_levels - 1:
                self.down_sample.append(resblock(ch, down=True))
                if input_pyramid:
                    self.pyramid_down.append(FIRConvDown(pyramid_ch, ch, fir_taps))
                    pyramid_ch = ch
                skip_ch.append(ch)

        self.mid_block0 = resblock(ch)
        self.mid_attn = attn(ch)
        self.mid_block1 = resblock(ch)

        self.up_blocks = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.up_sample = nn.ModuleList()
        for i in reversed(range(n_levels)):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                blocks.append(resblock(ch + skip_ch.pop(), nf * ch_mult[i]))
                ch = nf * ch_mult[i]
            self.up_blocks.append(blocks)
            self.up_attn.append(attn(ch) if self.resolutions[i] in attn_at else nn.Identity())
            if i != 0:
                self.up_sample.append(resblock(ch, up=True))
        assert not skip_ch

        self.norm_out = group_norm(ch)
        self.conv_out = conv2d(ch, out_ch, 3, init_scale=0.0)

        # optional spatial condition: per-level 1x1 projections onto the level's input width
        if cond_channels > 0:
            levels = range(n_levels) if cond_levels is None else [int(i) for i in cond_levels]
            bad = [i for i in levels if not 0 <= i < n_levels]
            if bad:
                raise ValueError(f"NCSNpp: cond_levels {bad} outside 0..{n_levels - 1}")
            self.cond_levels = sorted(set(levels))
            self.cond_proj = nn.ModuleDict(
                {str(i): conv2d(cond_channels, self.level_in_ch[i], 1) for i in self.cond_levels}
            )
        else:
            self.cond_levels = []
            self.cond_proj = None

    # ----------------------------------------------------------------- helpers
    def _code(self, z: torch.Tensor | None, style: torch.Tensor | None, batch: int) -> torch.Tensor:
        parts = []
        if self.mapping is not None:
            if z is None:
                raise ValueError("NCSNpp: a latent z of shape (B, nz) is required (nz > 0)")
            if z.shape != (batch, self.nz):
                got = tuple(z.shape)
                raise ValueError(f"NCSNpp: z must have shape ({batch}, {self.nz}), got {got}")
            parts.append(self.mapping(z))
        if self.style_dim > 0:
            if style is None or style.shape != (batch, self.style_dim):
                got = None if style is None else tuple(style.shape)
                raise ValueError(
                    f"NCSNpp: style must have shape ({batch}, {self.style_dim}), got {got}"
                )
            parts.append(style)
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def _cond_at(self, cond: torch.Tensor, level: int, size: tuple[int, int]) -> torch.Tensor:
        """The condition resized to ``size`` and projected to the level's width.

        Resizing (bilinear, weights summing to one) and the 1x1 projection are both linear and
        commute, bias included, so the cheaper order is taken: shrink first, or project first
        when enlarging (the projection then runs on the small map, and fewer channels are
        interpolated). Tests compare both orders.
        """
        proj = self.cond_proj[str(level)]
        if tuple(cond.shape[-2:]) == size:
            return proj(cond)
        shrink = cond.shape[-1] > size[1]
        if not shrink:
            cond = proj(cond)
        elif cond.dtype not in (torch.float32, torch.float64):
            cond = cond.float()  # antialiased resizing has no bfloat16 kernel on the CPU
        cond = F.interpolate(
            cond, size=size, mode="bilinear", align_corners=False, antialias=shrink
        )
        return proj(cond) if shrink else cond

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        z: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        style: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x`` (B, in_ch, H, W), ``t`` (B,), ``z`` (B, nz) -> x0 estimate (B, out_ch, H, W)."""
        batch = x.shape[0]
        if self.cond_proj is not None and cond is None:
            raise ValueError(f"NCSNpp: built with cond_channels={self.cond_channels}; pass cond")
        code = self._code(z, style, batch)
        temb = timestep_embedding(t, self.nf)
        temb = self.time_dense1(F.silu(self.time_dense0(temb)))

        pyramid = x
        hs = [self.conv_in(x)]
        for i in range(self.n_levels):
            for j, (block, attn) in enumerate(
                zip(self.down_blocks[i], self.down_attn[i], strict=True)
            ):
                h_in = hs[-1]
                if j == 0 and i in self.cond_levels:
                    h_in = h_in + self._cond_at(cond, i, tuple(h_in.shape[-2:]))
                hs.append(attn(block(h_in, temb, code)))
            if i != self.n_levels - 1:
                h = self.down_sample[i](hs[-1], temb, code)
                if self.input_pyramid:
                    pyramid = self.pyramid_down[i](pyramid)
                    pyramid = (pyramid + h) / math.sqrt(2.0) if self.skip_rescale else pyramid + h
                    h = pyramid
                hs.append(h)

        h = self.mid_block0(hs[-1], temb, code)
        h = self.mid_attn(h)
        h = self.mid_block1(h, temb, code)

        for k in range(self.n_levels):
            for block in self.up_blocks[k]:
                h = block(torch.cat([h, hs.pop()], dim=1), temb, code)
            h = self.up_attn[k](h)
            if k != self.n_levels - 1:
                h = self.up_sample[k](h, temb, code)
        assert not hs

        h = self.conv_out(F.silu(self.norm_out(h)))
        return torch.tanh(h) if self.use_tanh else h
