"""GAN losses of adversarial diffusion models: non-saturating logistic loss and the R1 penalty.

Non-saturating GAN (Goodfellow et al. 2014) written with softplus on raw logits, as in DD-GAN and
SynDiff: the discriminator minimises ``softplus(-D(real)) + softplus(D(fake))``, the generator
``softplus(-D(fake))``. R1 (Mescheder et al. 2018) penalises the squared gradient norm of the
discriminator at *real* samples, ``gamma / 2 * E ||grad_x D(x)||^2``; with lazy regularisation it
is computed only every ``every`` steps. SynDiff uses ``gamma = 1`` every 10 steps and (unlike
StyleGAN2) does not multiply the lazy penalty by the interval; :class:`R1Penalty` follows that
by default and offers ``scale_by_interval`` for the StyleGAN2 convention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def d_loss_real(logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss on real samples: ``mean softplus(-D(x))``."""
    return F.softplus(-logits.float()).mean()


def d_loss_fake(logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss on generated samples: ``mean softplus(D(G(z)))``."""
    return F.softplus(logits.float()).mean()


def g_loss_nonsaturating(logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: ``mean softplus(-D(G(z)))``."""
    return F.softplus(-logits.float()).mean()


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor, gamma: float) -> torch.Tensor:
    """``gamma / 2 * mean_b ||d sum(D) / d x_b||^2``; ``real_inputs`` must require grad.

    The graph is kept (``create_graph=True``) so the penalty can be back-propagated into the
    discriminator's parameters.
    """
    if not real_inputs.requires_grad:
        raise ValueError("r1_penalty: real_inputs must require grad before the forward pass")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return gamma / 2.0 * grad.reshape(grad.shape[0], -1).pow(2).sum(dim=1).mean()


class R1Penalty:
    """Lazy R1 regularisation: ``due(step)`` says when; ``__call__`` computes the penalty."""

    def __init__(
        self, gamma: float, every: int | None = 1, scale_by_interval: bool = False
    ) -> None:
        if gamma < 0:
            raise ValueError(f"R1Penalty: gamma must be >= 0, got {gamma}")
        if every is not None and every < 1:
            raise ValueError(f"R1Penalty: every must be >= 1 or None, got {every}")
        self.gamma = float(gamma)
        self.every = every or 1
        self.scale = float(self.every) if scale_by_interval else 1.0

    def due(self, step: int) -> bool:
        """True on the steps that carry the penalty (step 0, every, 2 every, ...)."""
        return self.gamma > 0 and step % self.every == 0

    def __call__(self, real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
        return self.scale * r1_penalty(real_logits, real_inputs, self.gamma)
