"""DRIT++ disentanglement networks (Lee et al., ECCV 2018 / IJCV 2020), as its official code builds
them (``--concat 1``, the default), shared by the ``drit`` plugin and DisDiff's disentanglement
module (section 2.2 of the DisDiff paper is a DRIT++ architecture).

- Content encoder per modality: reflect-padded 7x7 conv to 64 with LeakyReLU(0.01), two stride-2
  3x3 convs with instance norm and ReLU (128, 256), three instance-norm residual blocks; then
  one residual block *shared* by both modalities and, in training, additive N(0, 1) noise
  (DRIT++'s ``GaussianNoiseLayer``). For a 256 px slice the content map is 256 x 64 x 64.
- Attribute encoder per modality: reflect-padded 4x4 stride-2 conv (64, no activation), three
  residual "basic blocks" (LeakyReLU 0.2, two 3x3 convs, 2x average pooling, pooled 1x1
  shortcut) widening 64 -> 128 -> 192 -> 256, LeakyReLU, global average pooling and two linear
  heads for the mean and log-variance of an 8-d code.
- Decoder per modality (``G_concat``) after a residual block shared by both modalities: the
  attribute code is tiled and concatenated before every stage: three residual blocks at
  256 + 8 channels, two stride-2 transposed convs with layer norm (over channels and space,
  per-channel affine, MUNIT's) and ReLU (272 -> 136, 144 -> 72), a 1x1 transposed conv, tanh.
- Image discriminator: multi-scale (3 scales, 3x3 average pooling between them); each scale is
  ``n_layers`` (4) reflect-padded 4x4 stride-2 convs with LeakyReLU(0.01), 64 -> 512, then a
  1x1 conv to a map of logits. The official code never applies instance norm here (its
  ``LeakyReLUConv2d`` compares the literal string ``'norm'`` with ``'Instance'``).
- Content discriminator on the content map: three reflect-padded 7x7 stride-2 convs, a 4x4 conv
  (no padding), LeakyReLU(0.01) after each, then a 1x1 conv to logits; no normalisation (same
  string comparison).

Parameter counts at the published size on one-channel images, counted per official class (both
modalities together, the shared blocks once): content encoders 9,005,568 (9.01 M: two private
encoders plus the shared block), attribute encoders 2,684,064 (2.68 M), decoders 9,564,386
(9.56 M: two private decoders plus the shared block).

Small images: a multi-scale discriminator keeps only the scales on which all its layers fit,
and the content discriminator only the stride-2 convs that fit the content map
(:func:`fit_multiscale`, :func:`fit_content_discriminator`); the published sizes are unchanged.

Initialisation as the official ``gaussian_weights_init``: conv and transposed-conv weights from
N(0, 0.02); biases, linear layers and layer norms keep PyTorch's defaults
(:func:`init_drit`). :class:`AttributeMeans` gives a plugin the inference attribute code of a
target modality without its paired image: the mean code of that modality's training slices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mrbench.pairs import DOMAINS
from mrbench_methods.base import check_domain
from mrbench_methods.nets.resnet import ResnetBlock

#: the other domain of each
OTHER = {"a": "b", "b": "a"}


def init_drit(module: nn.Module, gain: float = 0.02) -> nn.Module:
    """DRIT++'s initialisation: conv weights ~ N(0, gain); everything else PyTorch's default."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, gain)
    return module


def _tile(z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a code ``(B, D)`` to a map ``(B, D, H, W)`` of ``like``'s spatial size."""
    return z[:, :, None, None].expand(-1, -1, like.shape[2], like.shape[3])


def _lrelu_conv(
    ch_in: int, ch_out: int, kernel: int, stride: int, pad: int, slope: float = 0.01
) -> list[nn.Module]:
    """DRIT++'s ``LeakyReLUConv2d``: reflect padding, conv, LeakyReLU (PyTorch's 0.01)."""
    conv = nn.Conv2d(ch_in, ch_out, kernel, stride, padding=pad, padding_mode="reflect")
    return [conv, nn.LeakyReLU(slope, inplace=True)]


class LayerNorm(nn.Module):
    """Layer norm over channels and space with a per-channel scale and shift (MUNIT's, as DRIT++
    uses it in its decoder); works for any spatial size, unlike ``nn.LayerNorm``."""

    def __init__(self, ch: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(ch, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[1:]
        return F.layer_norm(x, shape, self.weight.expand(shape), self.bias.expand(shape), self.eps)


class ContentEncoder(nn.Module):
    """Private part of one modality's content encoder (the shared block lives in the caller)."""

    def __init__(self, in_ch: int = 1, ch: int = 64, n_down: int = 2, n_res: int = 3) -> None:
        super().__init__()
        layers = _lrelu_conv(in_ch, ch, 7, 1, 3)
        for _ in range(n_down):
            layers += [
                nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, padding_mode="reflect"),
                nn.InstanceNorm2d(ch * 2),
                nn.ReLU(inplace=True),
            ]
            ch *= 2
        layers += [ResnetBlock(ch) for _ in range(n_res)]
        self.net = nn.Sequential(*layers)
        self.out_ch = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _BasicBlock(nn.Module):
    """DRIT++'s attribute-encoder block: two 3x3 convs and 2x average pooling, with a shortcut."""

    def __init__(self, ch: int, out_ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.Conv2d(ch, ch, 3, padding=1, padding_mode="reflect"),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ch, out_ch, 3, padding=1, padding_mode="reflect"),
            nn.AvgPool2d(2),
        )
        self.short = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(ch, out_ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.short(x)


class AttributeEncoder(nn.Module):
    """Image -> attribute code ``(z, mu, logvar)``: ``z`` is a reparameterised sample in training
    and ``mu`` in evaluation; without ``vae`` there is no log-variance head and ``z = mu``."""

    def __init__(
        self, in_ch: int = 1, ch: int = 64, n_blocks: int = 4, dim: int = 8, vae: bool = True
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ch, 4, 2, padding=1, padding_mode="reflect")]
        width = ch
        for i in range(1, n_blocks):
            out = ch * min(i + 1, 4)
            layers.append(_BasicBlock(width, out))
            width = out
        layers += [nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
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
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return z, mu, logvar


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
        self.res = _ConcatStage(nn.Sequential(*[ResnetBlock(ch) for _ in range(n_res)]))
        ups = []
        for _ in range(n_up):
            ch_in = ch + attr_dim
            up = nn.ConvTranspose2d(ch_in, ch_in // 2, 3, 2, padding=1, output_padding=1)
            ups.append(_ConcatStage(nn.Sequential(up, LayerNorm(ch_in // 2), nn.ReLU(True))))
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
    :meth:`groups` names its parts as the official classes group them (for optimisers and
    parameter counts).
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
        enc = {m: ContentEncoder(in_ch, content_ch, content_down, content_res) for m in DOMAINS}
        self.content_ch = enc["a"].out_ch
        self.enc_content = nn.ModuleDict(enc)
        self.enc_share = ResnetBlock(self.content_ch)
        self.enc_attr = nn.ModuleDict(
            {m: AttributeEncoder(in_ch, attr_ch, attr_blocks, attr_dim, attr_vae) for m in DOMAINS}
        )
        self.dec_share = ResnetBlock(self.content_ch)
        self.dec = nn.ModuleDict(
            {m: Decoder(self.content_ch, content_down, dec_res, attr_dim, in_ch) for m in DOMAINS}
        )
        self.attr_dim = attr_dim
        self.content_down = content_down
        self.content_noise = content_noise

    def groups(self) -> dict[str, list[nn.Module]]:
        """The official classes: ``E_content`` (both encoders + shared block), ``E_attr_concat``
        and ``G_concat`` (shared block + both decoders)."""
        return {
            "content_encoder": [self.enc_content, self.enc_share],
            "attribute_encoder": [self.enc_attr],
            "generator": [self.dec_share, self.dec],
        }

    def content(self, x: torch.Tensor, modality: str, noise: bool | None = None) -> torch.Tensor:
        """Content map; Gaussian noise (DRIT++) is added in training mode unless ``noise=False``."""
        h = self.enc_share(self.enc_content[modality](x))
        add = self.training if noise is None else noise
        if add and self.content_noise > 0:
            # drawn in the contiguous order, so a channels-last map gets the same noise
            noise_map = torch.randn_like(h, memory_format=torch.contiguous_format)
            h = h + noise_map * self.content_noise
        return h

    def attribute(
        self, x: torch.Tensor, modality: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return self.enc_attr[modality](x)

    def decode(self, zc: torch.Tensor, za: torch.Tensor, modality: str) -> torch.Tensor:
        return self.dec[modality](self.dec_share(zc), za)


# ------------------------------------------------------------------ discriminators
def fit_multiscale(size: int, n_layers: int, n_scales: int) -> tuple[int, int]:
    """``(n_layers, n_scales)`` that fit an image of ``size`` px: every 4x4 stride-2 layer needs
    at least 2 px of input, so a scale of side s takes at most log2(s) layers; scales on which
    the layers do not fit are dropped (at least one scale is kept, with fewer layers if need be).
    """
    layers = max(1, min(n_layers, int(size).bit_length() - 1))
    scales, side = 0, int(size)
    while scales < n_scales and side >= 2**layers:
        scales += 1
        side = (side + 1) // 2
    return layers, max(1, scales)


class MultiScaleDiscriminator(nn.Module):
    """DRIT++'s ``MultiScaleDis``: a patch discriminator per scale; returns their logit maps."""

    def __init__(self, in_ch: int = 1, ch: int = 64, n_layers: int = 4, n_scales: int = 3) -> None:
        super().__init__()
        nets = []
        for _ in range(n_scales):
            layers = _lrelu_conv(in_ch, ch, 4, 2, 1)
            width = ch
            for _ in range(1, n_layers):
                layers += _lrelu_conv(width, width * 2, 4, 2, 1)
                width *= 2
            layers.append(nn.Conv2d(width, 1, 1))
            nets.append(nn.Sequential(*layers))
        self.scales = nn.ModuleList(nets)
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, net in enumerate(self.scales):
            if i:
                x = self.down(x)
            outs.append(net(x))
        return outs


def fit_content_discriminator(size: int, n_down: int, kernel: int, final: int) -> tuple[int, int]:
    """``(n_down, final_kernel)`` for a content map of side ``size``: a reflect-padded (1)
    stride-2 conv of ``kernel`` needs an input of at least ``max(2, kernel - 2)`` px; the last
    conv (no padding) is at most as large as what is left."""
    side, layers = int(size), 0
    while layers < n_down and side >= max(2, kernel - 2):
        side = (side + 2 - kernel) // 2 + 1
        layers += 1
    return layers, max(1, min(final, side))


class ContentDiscriminator(nn.Module):
    """D_c: content map -> map of logits for "this content came from modality A" (DRIT++'s
    ``Dis_content``: ``n_down`` 7x7 stride-2 convs, a 4x4 conv, LeakyReLU(0.01), a 1x1 conv)."""

    def __init__(
        self,
        content_ch: int = 256,
        ch: int = 256,
        n_down: int = 3,
        kernel: int = 7,
        final_kernel: int = 4,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = content_ch
        for _ in range(n_down):
            layers += _lrelu_conv(width, ch, kernel, 2, 1)
            width = ch
        layers += [nn.Conv2d(width, ch, final_kernel), nn.LeakyReLU(0.01, True)]
        layers.append(nn.Conv2d(ch, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, zc: torch.Tensor) -> torch.Tensor:
        return self.net(zc)


# -------------------------------------------------------------------- building
#: The networks' parameters at the published size, under the names every plugin that builds
#: them from a params dict uses (``drit``, ``disdiff``).
NETWORK_DEFAULTS: dict[str, Any] = {
    "content_ch": 64,  # width of the first content-encoder conv; doubles per downsampling
    "content_down": 2,  # content map at 1/2^content_down resolution
    "content_res": 3,  # private residual blocks per content encoder (+1 shared)
    "content_noise": 1.0,  # s.d. of the training-time noise on content maps
    "attr_ch": 64,
    "attr_blocks": 4,
    "attr_dim": 8,  # nz
    "dec_res": 3,
    "dis_ch": 64,  # image discriminators (multi-scale)
    "dis_layers": 4,
    "dis_scales": 3,
    "dc_ch": 256,  # content discriminator
    "dc_layers": 3,
    "dc_kernel": 7,
    "dc_final_kernel": 4,
}
#: Small widths for CPU tests (32 px images).
NETWORK_TINY: dict[str, Any] = {
    "content_ch": 8,
    "content_res": 1,
    "attr_ch": 8,
    "attr_blocks": 3,
    "dec_res": 1,
    "dis_ch": 8,
    "dis_layers": 3,
    "dc_ch": 16,
}
#: The inference attribute code's parameters (:class:`AttributeMeans`).
INFERENCE_DEFAULTS: dict[str, Any] = {
    "attribute_mode": "mean",  # "mean" (training-set mean code) or "prior" (z ~ N(0, I))
    "attr_running_momentum": 0.01,
    "attr_mean_max_slices": 4000,
}


def check_image_size(plugin: str, image_size: int, p: dict[str, Any]) -> None:
    """The content encoders halve the image ``content_down`` times: it must divide evenly."""
    down = 2 ** int(p["content_down"])
    if image_size % down:
        raise ValueError(
            f"method {plugin!r}: image_size {image_size} is not divisible by "
            f"2^content_down = {down}"
        )


#: an initialiser: ``init(module, gain)`` changes ``module`` in place and returns it
Init = Callable[[nn.Module, float], nn.Module]


def build_disentangler(
    p: dict[str, Any], attr_vae: bool = True, gain: float = 0.02, init: Init = init_drit
) -> Disentangler:
    """The generator side from the :data:`NETWORK_DEFAULTS` keys of ``p``, initialised."""
    net = Disentangler(
        in_ch=1,
        content_ch=int(p["content_ch"]),
        content_down=int(p["content_down"]),
        content_res=int(p["content_res"]),
        attr_ch=int(p["attr_ch"]),
        attr_blocks=int(p["attr_blocks"]),
        attr_dim=int(p["attr_dim"]),
        attr_vae=attr_vae,
        dec_res=int(p["dec_res"]),
        content_noise=float(p["content_noise"]),
    )
    return init(net, gain)


def build_image_discriminators(
    p: dict[str, Any], image_size: int, gain: float = 0.02, init: Init = init_drit
) -> nn.ModuleDict:
    """One multi-scale discriminator per modality, fitted to ``image_size``, initialised."""
    layers, scales = fit_multiscale(image_size, int(p["dis_layers"]), int(p["dis_scales"]))
    return nn.ModuleDict(
        {
            m: init(MultiScaleDiscriminator(1, int(p["dis_ch"]), layers, scales), gain)
            for m in DOMAINS
        }
    )


def build_content_discriminator(
    p: dict[str, Any], image_size: int, content_ch: int, gain: float = 0.02, init: Init = init_drit
) -> ContentDiscriminator:
    """D_c fitted to the content maps of ``image_size`` images, initialised."""
    kernel = int(p["dc_kernel"])
    n_down, final = fit_content_discriminator(
        image_size // 2 ** int(p["content_down"]),
        int(p["dc_layers"]),
        kernel,
        int(p["dc_final_kernel"]),
    )
    net = ContentDiscriminator(content_ch, int(p["dc_ch"]), n_down, kernel, final)
    return init(net, gain)


# ---------------------------------------------------------------------- losses
def bce_logits(logits: torch.Tensor | Sequence[torch.Tensor], target: float) -> torch.Tensor:
    """Sigmoid + binary cross-entropy against a constant ``target``, mean over each logit map and
    summed over the maps of a multi-scale discriminator (DRIT++'s adversarial losses)."""
    maps = [logits] if isinstance(logits, torch.Tensor) else list(logits)
    return sum(
        F.binary_cross_entropy_with_logits(m.float(), torch.full_like(m.float(), target))
        for m in maps
    )


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the code, mean over the batch."""
    if logvar is None:
        return mu.new_zeros(())
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()


# ------------------------------------------------------------ inference attribute
class AttributeMeans:
    """Mixin for a :class:`~mrbench_methods.base.TranslationMethod` with a ``disentangler``: the
    attribute
    code of a target modality at test time, never taken from the paired target image.

    Default: the mean attribute code (posterior mean) of the modality's training slices,
    computed in :meth:`prepare_inference` into buffers ``attr_mean_<m>`` (part of the state dict);
    until then a running mean kept during training (:meth:`_update_running_attributes`), so that
    validation works. ``attribute_mode: prior`` samples z_a ~ N(0, I) under torch's seed instead.
    Reads the parameters ``attribute_mode``, ``attr_running_momentum`` and
    ``attr_mean_max_slices``.
    """

    disentangler: Disentangler
    params: dict[str, Any]
    plugin_name: str

    def _init_attribute_means(self, dim: int) -> None:
        if self.params["attribute_mode"] not in ("mean", "prior"):
            raise ValueError(
                f"method {self.plugin_name!r}: attribute_mode must be 'mean' or 'prior', "
                f"got {self.params['attribute_mode']!r}"
            )
        for m in DOMAINS:
            self.register_buffer(f"attr_mean_{m}", torch.zeros(dim))  # type: ignore[attr-defined]
        self.register_buffer("attr_count", torch.zeros(()))  # type: ignore[attr-defined]

    @torch.no_grad()
    def _update_running_attributes(self, mu: dict[str, torch.Tensor]) -> None:
        """Running mean of the attribute codes, used at inference until prepare_inference."""
        self.attr_count += 1
        w = max(1.0 / float(self.attr_count), float(self.params["attr_running_momentum"]))
        for m in DOMAINS:
            getattr(self, f"attr_mean_{m}").lerp_(mu[m].detach().float().mean(0), w)

    @torch.no_grad()
    def prepare_inference(self, slices: Iterator[dict[str, torch.Tensor]]) -> None:
        """Mean attribute code (posterior mean) of each modality over the training slices."""
        was_training = self.disentangler.training
        self.disentangler.eval()
        sums = {m: torch.zeros_like(getattr(self, f"attr_mean_{m}")) for m in DOMAINS}
        n = 0
        for batch in slices:
            for m in DOMAINS:
                x = batch[m].to(sums[m].device)
                sums[m] += self.disentangler.attribute(x, m)[1].float().sum(0)
            n += batch["a"].shape[0]
            if n >= int(self.params["attr_mean_max_slices"]):
                break
        if n == 0:
            raise ValueError(f"method {self.plugin_name!r}: prepare_inference got no slices")
        for m in DOMAINS:
            getattr(self, f"attr_mean_{m}").copy_(sums[m] / n)
        self.disentangler.train(was_training)

    def target_attribute(self, modality: str, batch_size: int) -> torch.Tensor:
        """The attribute code z_a of the target modality used at inference."""
        mean = getattr(self, f"attr_mean_{modality}")
        if self.params["attribute_mode"] == "prior":
            return torch.randn(batch_size, mean.numel(), device=mean.device)
        return mean[None].expand(batch_size, -1)

    @torch.no_grad()
    def content_map(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        """z_c of a batch of images of ``domain`` (``"a"``/``"b"``, no training noise), e.g.
        for Fig. 3."""
        domain = check_domain(domain)
        return self.disentangler.content(x.to(self.attr_mean_a.device), domain, noise=False)
