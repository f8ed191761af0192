"""Adaptive instance normalisation (Huang & Belongie 2017) in the two forms the style-based
translators use.

- :class:`AdaIN` (StarGAN-v2): instance norm without affine parameters on a feature map, then a
  per-channel scale and shift predicted from a style vector by one linear layer,
  ``(1 + gamma) * norm(x) + beta`` (the ``1 +`` keeps a zero style close to plain normalisation).
- :func:`token_adain` (InstaFormer): instance norm of a token sequence ``(B, N, C)`` over its
  ``N`` tokens, per sample and channel, then ``weight * norm(x) + bias`` with ``(B, C)`` weight
  and bias produced elsewhere (one MLP output shared by every AdaIN layer of the transformer).
  It takes the place of LayerNorm in the pre-norm transformer blocks.

Both translators take the style of a target modality at test time from the training slices, not
from the target image: :func:`mean_style_codes` is that mean, :data:`STYLE_MEAN_DEFAULTS` the
parameters both read for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

#: The test-time style's parameters, under the same names in both translators.
STYLE_MEAN_DEFAULTS: dict[str, Any] = {
    "style_mode": "mean",  # test-time style: "mean" (training-set mean code) or "prior"
    "style_running_momentum": 0.01,
    "style_mean_max_slices": 4000,
}


class AdaIN(nn.Module):
    """``(1 + gamma(s)) * IN(x) + beta(s)`` with ``[gamma, beta] = Linear(s)``."""

    def __init__(self, style_dim: int, channels: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.fc = nn.Linear(style_dim, channels * 2)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.fc(s)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


def token_adain(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Normalise ``x`` ``(B, N, C)`` over tokens per (sample, channel), then scale and shift by
    ``weight``/``bias`` ``(B, C)``. The variance is the biased one (as batch-norm statistics)."""
    if x.dim() != 3 or weight.shape != (x.shape[0], x.shape[2]) or bias.shape != weight.shape:
        raise ValueError(
            f"token_adain: expected x (B, N, C) and weight/bias (B, C), got {tuple(x.shape)}, "
            f"{tuple(weight.shape)}, {tuple(bias.shape)}"
        )
    mean = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, unbiased=False, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps) * weight[:, None] + bias[:, None]


class TokenAdaIN(nn.Module):
    """Holds the AdaIN parameters assigned for the current batch (see :func:`token_adain`)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``params`` ``(B, 2C)``: the first ``C`` values are the bias (mean), the next the
        weight (standard deviation), InstaFormer's layout of its AdaIN MLP output."""
        c = self.channels
        return token_adain(x, params[:, c : 2 * c], params[:, :c], self.eps)


@torch.no_grad()
def mean_style_codes(
    method: nn.Module,
    slices: Iterator[dict[str, torch.Tensor]],
    codes: Callable[[dict[str, torch.Tensor]], Iterable[torch.Tensor]],
    means: torch.Tensor,
    max_slices: int,
    plugin: str,
) -> None:
    """Set ``means`` (one row per style) to the mean style codes over training slices.

    ``codes(batch)`` yields a ``(B, style_dim)`` batch of codes per row of ``means``; whole batches
    are read until ``max_slices`` slices (counted in ``a``) are in. ``method`` runs in eval mode
    meanwhile and returns to its mode after; no slices at all is an error naming ``plugin``.
    """
    was_training = method.training
    method.eval()
    sums = torch.zeros_like(means)
    n = 0
    for batch in slices:
        for i, code in enumerate(codes(batch)):
            sums[i] += code.sum(0)
        n += batch["a"].shape[0]
        if n >= max_slices:
            break
    if n == 0:
        raise ValueError(f"method {plugin!r}: prepare_inference got no training slices")
    means.copy_(sums / n)
    method.train(was_training)
