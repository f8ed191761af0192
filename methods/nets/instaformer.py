"""InstaFormer networks (Kim et al., CVPR 2022) without the instance (box) branches.

One generator translates one way (A -> B). Its parts, with the official sizes as defaults:

- :class:`ContentEncoder` (CUT's encoder without residual blocks): reflect pad 3, 7x7 conv to
  ``ngf``, InstanceNorm, ReLU; then per downsampling a stride-1 3x3 conv doubling the width,
  InstanceNorm, ReLU and a blur-pooling downsample. 256 x H/4 x W/4 at ``ngf = 64``. It also
  returns the outputs of chosen layers (by index in its layer list) for PatchNCE.
- :class:`StyleEncoder`: the same trunk, global average pooling and a 1x1 conv to an 8-d code.
- :class:`AdaINMLP`: ``8 -> 256 -> 256 -> 2 * embed_dim`` (ReLU between): one AdaIN parameter
  pair (bias = first half, weight = second half) that all 12 AdaIN layers of the transformer use.
- :class:`PatchEmbedStem`: ``embed_down`` stride-2 3x3 convs (256 -> 512 -> 512 -> 1024 at the
  official sizes; no activations between them) and a 1x1 conv, flattened to
  ``(H / 4 / 2^embed_down)^2`` tokens (64 at 256 px); sinusoidal positions are added
  (:func:`sinusoidal_positions`).
- :class:`AdaINTransformer`: 6 pre-norm blocks whose norms are AdaIN over tokens
  (:class:`mrbench_methods.nets.adain.TokenAdaIN`), 4 heads of width 256, GELU MLP of width 4096.
- :class:`Decoder`: tokens back to a map by a ``2^embed_down``-sided transposed conv of the same
  stride (8x8 stride 8), then per upsampling a blur upsample, 3x3 conv halving the width,
  InstanceNorm, ReLU; reflect pad 3, 7x7 conv to one channel, tanh.

Biases and initialisation follow the official code: the generator and discriminator keep
PyTorch's default initialisation. At 256 px with one channel a generator has 103,352,329
parameters (the official 129.4 M less the 26.1 M of its box embedding and box decoder).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mrbench_methods.nets.adain import TokenAdaIN
from mrbench_methods.nets.antialias import BlurDownsample, BlurUpsample


def _encoder_layers(in_ch: int, ngf: int, n_down: int) -> tuple[list[nn.Module], list[int], int]:
    """The CUT-style trunk, the channel count after each layer, and the output width."""
    layers: list[nn.Module] = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(in_ch, ngf, 7),
        nn.InstanceNorm2d(ngf),
        nn.ReLU(True),
    ]
    channels = [in_ch, ngf, ngf, ngf]
    width = ngf
    for _ in range(n_down):
        layers += [
            nn.Conv2d(width, width * 2, 3, 1, 1),
            nn.InstanceNorm2d(width * 2),
            nn.ReLU(True),
            BlurDownsample(width * 2),
        ]
        width *= 2
        channels += [width] * 4
    return layers, channels, width


class ContentEncoder(nn.Module):
    def __init__(self, in_ch: int = 1, ngf: int = 64, n_down: int = 2) -> None:
        super().__init__()
        layers, self.layer_channels, self.out_ch = _encoder_layers(in_ch, ngf, n_down)
        self.model = nn.Sequential(*layers)

    def forward(
        self, x: torch.Tensor, layers: tuple[int, ...] | list[int] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for i, layer in enumerate(self.model):
            x = layer(x)
            if i in layers:
                feats.append(x)
        return x, feats


class StyleEncoder(nn.Module):
    def __init__(self, in_ch: int = 1, ngf: int = 64, n_down: int = 2, style_dim: int = 8) -> None:
        super().__init__()
        layers, _, width = _encoder_layers(in_ch, ngf, n_down)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(width, style_dim, 1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).flatten(1)


class AdaINMLP(nn.Module):
    def __init__(self, style_dim: int = 8, out_dim: int = 2048, hidden: int = 256) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(style_dim, hidden),
            nn.ReLU(True),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.model(s.flatten(1))


class PatchEmbedStem(nn.Module):
    """``n_down`` stride-2 3x3 convs (middle width ``embed_dim / 2``) and a 1x1 conv -> tokens."""

    def __init__(self, in_ch: int = 256, embed_dim: int = 1024, n_down: int = 3) -> None:
        super().__init__()
        if n_down < 1:
            raise ValueError(f"PatchEmbedStem: n_down must be >= 1, got {n_down}")
        widths = [in_ch] + [embed_dim // 2] * (n_down - 1) + [embed_dim]
        layers: list[nn.Module] = [
            nn.Conv2d(a, b, 3, stride=2, padding=1)
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        ]
        layers.append(nn.Conv2d(embed_dim, embed_dim, 1))
        self.proj = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def _sinusoid(length: int, dim: int) -> torch.Tensor:
    """Transformer sine/cosine table ``(length, dim)``: even columns sine, odd cosine."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


def sinusoidal_positions(map_size: int, patch: int, embed_dim: int) -> torch.Tensor:
    """Token positions ``(1, (map_size / patch)^2, embed_dim)``, InstaFormer's layout.

    Four quarter-width sinusoid tables on the content-map grid: row index, column index, and two
    constant quarters for a box's height and width (a patch-sized box, position ``patch - 1``);
    the map is bilinearly resized to the token grid.
    """
    if embed_dim % 8:
        raise ValueError(f"sinusoidal_positions: embed_dim {embed_dim} is not a multiple of 8")
    d = embed_dim // 4
    pe = _sinusoid(max(map_size, patch), d)
    rows = pe[:map_size, None, :].expand(map_size, map_size, d)
    cols = pe[None, :map_size, :].expand(map_size, map_size, d)
    box = pe[patch - 1].expand(map_size, map_size, d)
    grid = torch.cat([rows, cols, box, box], dim=2).permute(2, 0, 1)[None]
    side = map_size // patch
    grid = F.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False)
    return grid.flatten(2).transpose(1, 2).contiguous()  # broadcast as is by NCCL


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_qkv = nn.Linear(dim, inner * 3)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (
            t.view(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1)
        )
        attn = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, n, -1))


class AdaINTransformer(nn.Module):
    """Pre-norm transformer blocks with token AdaIN in place of LayerNorm."""

    def __init__(
        self, dim: int = 1024, depth: int = 6, heads: int = 4, dim_head: int = 256, mlp: int = 4096
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            self.blocks.append(
                nn.ModuleDict(
                    {
                        "norm1": TokenAdaIN(dim),
                        "attn": Attention(dim, heads, dim_head),
                        "norm2": TokenAdaIN(dim),
                        "ff": nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim)),
                    }
                )
            )

    def forward(self, x: torch.Tensor, adain: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk["attn"](blk["norm1"](x, adain)) + x
            x = blk["ff"](blk["norm2"](x, adain)) + x
        return x


class Decoder(nn.Module):
    def __init__(
        self,
        embed_dim: int = 1024,
        feat_ch: int = 256,
        ngf: int = 64,
        n_up: int = 2,
        patch: int = 8,
        out_ch: int = 1,
    ) -> None:
        super().__init__()
        self.inv_patch_embed = nn.ConvTranspose2d(embed_dim, feat_ch, patch, stride=patch)
        layers: list[nn.Module] = []
        width = feat_ch
        for _ in range(n_up):
            layers += [
                BlurUpsample(width),
                nn.Conv2d(width, width // 2, 3, 1, 1),
                nn.InstanceNorm2d(width // 2),
                nn.ReLU(True),
            ]
            width //= 2
        if width != ngf:
            raise ValueError(f"Decoder: {n_up} upsamplings of {feat_ch} end at {width}, not {ngf}")
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n, c = tokens.shape
        side = math.isqrt(n)
        x = tokens.transpose(1, 2).reshape(b, c, side, side)
        return self.model(self.inv_patch_embed(x))


class InstaFormerGenerator(nn.Module):
    """Content encoder, style encoder, AdaIN MLP, patch embedding, transformer and decoder."""

    def __init__(
        self,
        image_size: int = 256,
        in_ch: int = 1,
        ngf: int = 64,
        n_down: int = 2,
        style_dim: int = 8,
        mlp_hidden: int = 256,
        embed_dim: int = 1024,
        embed_down: int = 3,
        depth: int = 6,
        heads: int = 4,
        dim_head: int = 256,
        mlp_dim: int = 4096,
    ) -> None:
        super().__init__()
        factor = 2 ** (n_down + embed_down)
        if image_size % factor:
            raise ValueError(
                f"InstaFormer: image_size {image_size} is not divisible by 2^(n_down + "
                f"embed_down) = {factor}"
            )
        self.content_encoder = ContentEncoder(in_ch, ngf, n_down)
        self.style_encoder = StyleEncoder(in_ch, ngf, n_down, style_dim)
        self.mlp_adain = AdaINMLP(style_dim, 2 * embed_dim, mlp_hidden)
        feat_ch = self.content_encoder.out_ch
        patch = 2**embed_down
        self.patch_embed = PatchEmbedStem(feat_ch, embed_dim, embed_down)
        self.register_buffer(
            "pos_embed",
            sinusoidal_positions(image_size // 2**n_down, patch, embed_dim),
            persistent=False,
        )
        self.transformer = AdaINTransformer(embed_dim, depth, heads, dim_head, mlp_dim)
        self.decoder = Decoder(embed_dim, feat_ch, ngf, n_down, patch, in_ch)
        self.style_dim = style_dim

    def content(
        self, x: torch.Tensor, layers: tuple[int, ...] | list[int] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.content_encoder(x, layers)

    def style(self, x: torch.Tensor) -> torch.Tensor:
        return self.style_encoder(x)

    def decode(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """Content map + style code -> image (the AdaIN pair comes from the style)."""
        tokens = self.patch_embed(content) + self.pos_embed.to(content.dtype)
        return self.decoder(self.transformer(tokens, self.mlp_adain(style)))
