"""DRIT++-style disentanglement networks (Lee et al., ECCV 2018 / IJCV 2020).

DisDiff's disentanglement module (section 2.2 of the paper) is a DRIT++ architecture: per-modality
content encoders producing a *spatial* content map, per-modality attribute encoders producing a
low-dimensional modality code, per-modality decoders G(z_c, z_a), per-modality image
discriminators and a content discriminator D_c. The sizes follow DRIT++'s published networks:

- content encoder: 7x7 conv (64) + LeakyReLU, two stride-2 3x3 convs with instance norm and ReLU
  (128, 256), three instance-norm residual blocks, then one residual block *shared* by both
  modalities and, in training only, additive Gaussian noise (DRIT++'s ``GaussianNoiseLayer``).
  For a 256 px slice the content map is 256 x 64 x 64.
- attribute encoder: 4x4 stride-2 conv (64) + LeakyReLU, residual "basic blocks" with average
  pooling that widen to 2x, 3x, 4x the base width, global average pooling, and two linear heads
  for the mean and log-variance of an 8-d code (the ``concat`` variant of DRIT++ with its KL term).
- decoder: a residual block shared by both modalities, then per modality three residual blocks,
  two stride-2 transposed convs and a 1x1 transposed conv with tanh; the attribute code is tiled
  and concatenated to the features *before every stage* (DRIT++'s ``G_concat``).
- image discriminator: stride-2 3x3 convs with LeakyReLU doubling the width, then a 1x1 conv to a
  patch of logits (DRIT++'s ``Dis`` without spectral norm).
- content discriminator: stride-2 convs with LeakyReLU on the content map, global average pooling
  and a linear logit, no normalisation. DRIT++ uses 7x7 kernels sized for 64 x 64 content maps;
  its code asks for instance norm but never applies it (the layer compares the literal string
  'norm' with 'Instance'), so it has no normalisation either. Here 3x3 kernels, so the same
  network works on the 8 x 8 maps of the demo.

Every size is a constructor parameter; :class:`Disentangler` bundles the generator side (the
parts that receive generator gradients and whose moving average is used for inference).
"""

from __future__ import annotations

import torch
from torch import nn

MODALITIES = ("t1", "t2")


def _tile(z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a code ``(B, D)`` to a map ``(B, D, H, W)`` of ``like``'s spatial size."""
    return z[:, :, None, None].expand(-1, -1, like.shape[2], like.shape[3])


class INSResBlock(nn.Module):
    """Residual block: reflect-pad 3x3 conv, instance norm, ReLU, 3x3 conv, instance norm."""

    def __init__(self, ch: int, out_ch: int | None = None) -> None:
        super().__init__()
        out_ch = out_ch or ch
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, out_ch, 3),
            nn.InstanceNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(out_ch, out_ch, 3),
            nn.InstanceNorm2d(out_ch),
        )
        self.skip = nn.Identity() if out_ch == ch else nn.Conv2d(ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class ContentEncoder(nn.Module):
    """Private part of one modality's content encoder (the shared block lives in the caller)."""

    def __init__(self, in_ch: int = 1, ch: int = 64, n_down: int = 2, n_res: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_ch, ch, 7),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for _ in range(n_down):
            layers += [
                nn.ReflectionPad2d(1),
                nn.Conv2d(ch, ch * 2, 3, stride=2),
                nn.InstanceNorm2d(ch * 2),
                nn.ReLU(inplace=True),
            ]
            ch *= 2
        layers += [INSResBlock(ch) for _ in range(n_res)]
        self.net = nn.Sequential(*layers)
        self.out_ch = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AttributeEncoder(nn.Module):
    """Image -> attribute code: ``(z, mu, logvar)``; ``logvar`` is None without ``vae``."""

    def __init__(
        self, in_ch: int = 1, ch: int = 64, n_blocks: int = 4, dim: int = 8, vae: bool = True
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_ch, ch, 4, stride=2),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        width = ch
        for i in range(1, n_blocks):
            out = ch * min(i + 1, 4)
            layers.append(_BasicBlock(width, out))
            width = out
        layers += [nn.LeakyReLU(0.2, inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.mu = nn.Linear(width, dim)
        self.logvar = nn.Linear(width, dim) if vae else None
        self.dim = dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        h = self.net(x)
        mu = self.mu(h)
        if self.logvar is None:
            return mu, mu, None
        logvar = self.logvar(h)
        if self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        return z, mu, logvar


class _BasicBlock(nn.Module):
    """DRIT++'s attribute-encoder block: two 3x3 convs and 2x average pooling, with a shortcut."""

    def __init__(self, ch: int, out_ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.LeakyReLU(0.2, inplace=False),
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3),
            nn.LeakyReLU(0.2, inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, out_ch, 3),
            nn.AvgPool2d(2),
        )
        self.short = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(ch, out_ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.short(x)


class _ConcatStage(nn.Module):
    """One decoder stage whose input is ``cat(features, tiled attribute)``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, h: torch.Tensor, za: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([h, _tile(za, h)], dim=1))


class Decoder(nn.Module):
    """Private part of one modality's decoder G(z_c, z_a) (after the shared residual block)."""

    def __init__(
        self,
        content_ch: int = 256,
        n_up: int = 2,
        n_res: int = 3,
        attr_dim: int = 8,
        out_ch: int = 1,
    ) -> None:
        super().__init__()
        ch = content_ch + attr_dim
        self.res = _ConcatStage(nn.Sequential(*[INSResBlock(ch) for _ in range(n_res)]))
        ups = []
        for _ in range(n_up):
            ch_in = ch + attr_dim
            ups.append(
                _ConcatStage(
                    nn.Sequential(
                        nn.ConvTranspose2d(ch_in, ch_in // 2, 3, 2, padding=1, output_padding=1),
                        nn.InstanceNorm2d(ch_in // 2),
                        nn.ReLU(inplace=True),
                    )
                )
            )
            ch = ch_in // 2
        self.ups = nn.ModuleList(ups)
        self.out = _ConcatStage(
            nn.Sequential(nn.ConvTranspose2d(ch + attr_dim, out_ch, 1), nn.Tanh())
        )

    def forward(self, h: torch.Tensor, za: torch.Tensor) -> torch.Tensor:
        h = self.res(h, za)
        for up in self.ups:
            h = up(h, za)
        return self.out(h, za)


class Disentangler(nn.Module):
    """Generator side of the disentanglement module: E_c, E_a and G for both modalities.

    ``content(x, m)`` -> spatial content map ``(B, C, H/2^n_down, W/2^n_down)``;
    ``attribute(x, m)`` -> ``(z, mu, logvar)``; ``decode(z_c, z_a, m)`` -> image in ``[-1, 1]``.
    """

    def __init__(
        self,
        in_ch: int = 1,
        content_ch: int = 64,
        content_down: int = 2,
        content_res: int = 3,
        attr_ch: int = 64,
        attr_blocks: int = 4,
        attr_dim: int = 8,
        attr_vae: bool = True,
        dec_res: int = 3,
        content_noise: float = 1.0,
    ) -> None:
        super().__init__()
        enc = {m: ContentEncoder(in_ch, content_ch, content_down, content_res) for m in MODALITIES}
        self.content_ch = enc["t1"].out_ch
        self.enc_content = nn.ModuleDict(enc)
        self.enc_share = INSResBlock(self.content_ch)
        self.enc_attr = nn.ModuleDict(
            {
                m: AttributeEncoder(in_ch, attr_ch, attr_blocks, attr_dim, attr_vae)
                for m in MODALITIES
            }
        )
        self.dec_share = INSResBlock(self.content_ch)
        self.dec = nn.ModuleDict(
            {
                m: Decoder(self.content_ch, content_down, dec_res, attr_dim, in_ch)
                for m in MODALITIES
            }
        )
        self.attr_dim = attr_dim
        self.content_down = content_down
        self.content_noise = content_noise

    def content(self, x: torch.Tensor, modality: str, noise: bool | None = None) -> torch.Tensor:
        """Content map; Gaussian noise (DRIT++) is added in training mode unless ``noise=False``."""
        h = self.enc_share(self.enc_content[modality](x))
        add = self.training if noise is None else noise
        if add and self.content_noise > 0:
            h = h + torch.randn_like(h) * self.content_noise
        return h

    def attribute(
        self, x: torch.Tensor, modality: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return self.enc_attr[modality](x)

    def decode(self, zc: torch.Tensor, za: torch.Tensor, modality: str) -> torch.Tensor:
        return self.dec[modality](self.dec_share(zc), za)


class ImageDiscriminator(nn.Module):
    """Patch discriminator: ``n_layers`` stride-2 3x3 convs (LeakyReLU), then a 1x1 conv."""

    def __init__(self, in_ch: int = 1, ch: int = 64, n_layers: int = 6, max_ch: int = 1024) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_ch
        out = ch
        for _ in range(n_layers):
            layers += [nn.Conv2d(width, out, 3, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
            width, out = out, min(out * 2, max_ch)
        layers.append(nn.Conv2d(width, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ContentDiscriminator(nn.Module):
    """D_c (eq. 7): content map -> one logit for "this content came from T1" (vs T2)."""

    def __init__(self, content_ch: int = 256, ch: int = 256, n_down: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = content_ch
        for _ in range(n_down):
            layers += [nn.Conv2d(width, ch, 3, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
            width = ch
        layers += [
            nn.Conv2d(width, ch, 1),
            nn.LeakyReLU(0.2, True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(ch, 1),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, zc: torch.Tensor) -> torch.Tensor:
        return self.net(zc).squeeze(1)
