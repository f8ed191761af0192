"""StarGAN-v2 networks (Choi et al., CVPR 2020), sized by image side as the official code does.

- Residual block :class:`ResBlk`: ``[IN(affine)] -> LeakyReLU(0.2) -> conv3x3 -> [avg-pool 2]
  -> [IN] -> LeakyReLU -> conv3x3``, shortcut ``[1x1 conv without bias] -> [avg-pool 2]``, sum
  divided by sqrt(2) (unit variance).
- :class:`AdainResBlk`: the same with AdaIN driven by the style and nearest upsampling in place
  of pooling (``w_hpf = 0``: the shortcut is always added, divided by sqrt(2)).
- :class:`Generator`: 3x3 stem to ``dim``; ``log2(size) - 4`` downsampling blocks doubling the
  width up to ``max_dim``, then 2 bottleneck blocks; the decoder mirrors them with AdaIN blocks;
  out: IN(affine), LeakyReLU, 1x1 conv (no tanh).
- :class:`MappingNetwork`: ``z -> 4 x (Linear 512, ReLU)`` shared, then per domain
  ``3 x (Linear 512, ReLU) + Linear(style_dim)``.
- :class:`StyleEncoder` / :class:`Discriminator` share the trunk: 3x3 stem, ``log2(size) - 2``
  downsampling blocks, LeakyReLU, 4x4 valid conv (to 1x1), LeakyReLU; then a per-domain linear
  to the style (encoder) or a 1x1 conv to one logit per domain (discriminator).

The official code ties the base width to the image side (``2^14 / size``: 64 at 256 px); here it
is the parameter ``dim`` so that a small image can keep a small width. At 256 px, one channel,
two domains and ``dim = 64``, ``max_dim = 512`` these are 33.89 M (generator), 2.44 M (mapping),
20.92 M (style encoder) and 20.85 M (discriminator) parameters, the official counts.
Weights use He (Kaiming normal, fan-in, ReLU gain) initialisation with zero biases, as there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mrbench_methods.nets.adain import AdaIN

SQRT2 = math.sqrt(2.0)


def he_init(module: nn.Module) -> nn.Module:
    """Kaiming-normal (fan-in, ReLU) weights and zero biases for every conv and linear layer."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def n_down_generator(image_size: int) -> int:
    """Down/upsampling blocks of the generator: ``log2(size) - 4`` (4 at 256 px, 1 at 32 px)."""
    return max(0, int(math.log2(image_size)) - 4)


def n_down_trunk(image_size: int) -> int:
    """Downsampling blocks of the style encoder and discriminator: ``log2(size) - 2``."""
    return int(math.log2(image_size)) - 2


class ResBlk(nn.Module):
    def __init__(
        self, dim_in: int, dim_out: int, normalize: bool = False, downsample: bool = False
    ) -> None:
        super().__init__()
        self.normalize = normalize
        self.downsample = downsample
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        if normalize:
            self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
            self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, bias=False) if dim_in != dim_out else None

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv1x1 is not None:
            x = self.conv1x1(x)
        return F.avg_pool2d(x, 2) if self.downsample else x

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = self.norm1(x)
        x = self.conv1(F.leaky_relu(x, 0.2))
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        if self.normalize:
            x = self.norm2(x)
        return self.conv2(F.leaky_relu(x, 0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self._shortcut(x) + self._residual(x)) / SQRT2


class AdainResBlk(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN(style_dim, dim_in)
        self.norm2 = AdaIN(style_dim, dim_out)
        self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, bias=False) if dim_in != dim_out else None

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.upsample else x

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        sc = self._up(x)
        if self.conv1x1 is not None:
            sc = self.conv1x1(sc)
        h = self.conv1(self._up(F.leaky_relu(self.norm1(x, s), 0.2)))
        h = self.conv2(F.leaky_relu(self.norm2(h, s), 0.2))
        return (h + sc) / SQRT2


class Generator(nn.Module):
    def __init__(
        self,
        image_size: int = 256,
        in_ch: int = 1,
        dim: int = 64,
        max_dim: int = 512,
        style_dim: int = 64,
        n_bottleneck: int = 2,
    ) -> None:
        super().__init__()
        self.from_img = nn.Conv2d(in_ch, dim, 3, 1, 1)
        self.encode = nn.ModuleList()
        self.decode = nn.ModuleList()
        width = dim
        for _ in range(n_down_generator(image_size)):
            out = min(width * 2, max_dim)
            self.encode.append(ResBlk(width, out, normalize=True, downsample=True))
            self.decode.insert(0, AdainResBlk(out, width, style_dim, upsample=True))
            width = out
        for _ in range(n_bottleneck):
            self.encode.append(ResBlk(width, width, normalize=True))
            self.decode.insert(0, AdainResBlk(width, width, style_dim))
        self.to_img = nn.Sequential(
            nn.InstanceNorm2d(dim, affine=True), nn.LeakyReLU(0.2), nn.Conv2d(dim, in_ch, 1)
        )

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        x = self.from_img(x)
        for block in self.encode:
            x = block(x)
        for block in self.decode:
            x = block(x, s)
        return self.to_img(x)


class MappingNetwork(nn.Module):
    def __init__(
        self, latent_dim: int = 16, style_dim: int = 64, num_domains: int = 2, hidden: int = 512
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(latent_dim, hidden), nn.ReLU()]
        for _ in range(3):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        self.shared = nn.Sequential(*layers)
        self.unshared = nn.ModuleList()
        for _ in range(num_domains):
            branch: list[nn.Module] = []
            for _ in range(3):
                branch += [nn.Linear(hidden, hidden), nn.ReLU()]
            branch.append(nn.Linear(hidden, style_dim))
            self.unshared.append(nn.Sequential(*branch))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.shared(z)
        out = torch.stack([branch(h) for branch in self.unshared], dim=1)  # (B, D, S)
        return out[torch.arange(y.shape[0], device=y.device), y]


def _trunk(
    net: str, image_size: int, in_ch: int, dim: int, max_dim: int
) -> tuple[nn.Sequential, int]:
    """The trunk of :class:`StyleEncoder` and :class:`Discriminator` (named ``net`` in errors) and
    its output width."""
    if image_size < 8:
        raise ValueError(f"{net}: image_size must be >= 8, got {image_size}")
    layers: list[nn.Module] = [nn.Conv2d(in_ch, dim, 3, 1, 1)]
    width = dim
    for _ in range(n_down_trunk(image_size)):
        out = min(width * 2, max_dim)
        layers.append(ResBlk(width, out, downsample=True))
        width = out
    layers += [nn.LeakyReLU(0.2), nn.Conv2d(width, width, 4, 1, 0), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers), width


class StyleEncoder(nn.Module):
    def __init__(
        self,
        image_size: int = 256,
        in_ch: int = 1,
        dim: int = 64,
        max_dim: int = 512,
        style_dim: int = 64,
        num_domains: int = 2,
    ) -> None:
        super().__init__()
        self.shared, width = _trunk("StyleEncoder", image_size, in_ch, dim, max_dim)
        self.unshared = nn.ModuleList(nn.Linear(width, style_dim) for _ in range(num_domains))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.shared(x).flatten(1)
        out = torch.stack([head(h) for head in self.unshared], dim=1)
        return out[torch.arange(y.shape[0], device=y.device), y]


class Discriminator(nn.Module):
    def __init__(
        self,
        image_size: int = 256,
        in_ch: int = 1,
        dim: int = 64,
        max_dim: int = 512,
        num_domains: int = 2,
    ) -> None:
        super().__init__()
        trunk, width = _trunk("Discriminator", image_size, in_ch, dim, max_dim)
        self.main = nn.Sequential(*trunk, nn.Conv2d(width, num_domains, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.main(x).flatten(1)  # (B, num_domains)
        return out[torch.arange(y.shape[0], device=y.device), y]
