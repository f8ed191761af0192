"""The few-step diffusion process of adversarial diffusion models (DD-GAN, SynDiff), in one place.

SynDiff (Ozbey et al., IEEE TMI 2023) follows denoising diffusion GANs (Xiao et al., ICLR 2022):
instead of ~1000 small Gaussian steps it takes ``T = 4`` large ones and learns each reverse step
with a conditional GAN whose generator predicts the clean image ``x0``. This module holds
everything that is *not* a network: the discretised variance-preserving schedule, the forward
(noising) process, the Gaussian posterior used to turn an ``x0`` estimate into a reverse step, and
the sampler. Each formula sits next to the plain variable names it defines.

Schedule (variance-preserving SDE with linear beta(t) from ``beta_min`` to ``beta_max``)::

    t_i        = (i / T) * (1 - eps) + eps,               i = 0..T,  eps = 1e-3
    var(t)     = 1 - exp(-0.5 t^2 (beta_max - beta_min) - t beta_min)
    alpha_bar_i = 1 - var(t_i)
    beta_i     = 1 - alpha_bar_i / alpha_bar_{i-1},       i = 1..T

With T = 4, beta_min = 0.1, beta_max = 20 the betas are [0.47826, 0.84921, 0.95642, 0.98740] and
``alpha_bar_T`` is about 4.32e-5, so ``x_T`` is practically pure noise.

Indexing follows the reference code: level 0 is the clean image (its step variance is 1e-8, i.e.
none), and a training timestep ``t`` in ``0..T-1`` names the *pair* (``x_t``, ``x_{t+1}``). The
generator sees ``x_{t+1}`` and the integer ``t``; the discriminator judges ``(x_t, x_{t+1})``.
Coefficients are computed in float64 and stored as float32 buffers (not saved in state dicts:
they are a pure function of the three constructor arguments).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

#: smallest time of the grid (t_0), as in the reference schedule
EPS_SMALL = 1e-3
#: variance of the (non-)step into level 0; the reference code uses 1e-8 so level 0 is the data
FIRST_BETA = 1e-8
#: floor of the posterior variance before taking its log (variance is 0 for the last step)
LOG_VAR_FLOOR = 1e-20


def time_grid(num_steps: int, eps: float = EPS_SMALL) -> torch.Tensor:
    """``t_i = (i / T)(1 - eps) + eps`` for ``i = 0..T`` (float64, length ``T + 1``)."""
    i = torch.arange(num_steps + 1, dtype=torch.float64)
    return i / num_steps * (1.0 - eps) + eps


def vp_variance(t: torch.Tensor, beta_min: float, beta_max: float) -> torch.Tensor:
    """Marginal variance of the VP-SDE: ``1 - exp(-0.5 t^2 (bmax - bmin) - t bmin)``."""
    return 1.0 - torch.exp(-0.5 * t**2 * (beta_max - beta_min) - t * beta_min)


def _extract(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """``values[t]`` reshaped to broadcast over a batch of ``ndim``-dimensional tensors."""
    return values.gather(0, t).reshape(t.shape[0], *([1] * (ndim - 1)))


class AdversarialDiffusion(nn.Module):
    """Discretised VP schedule, forward pairs, posterior and the ``T``-step sampler.

    Buffers (all float32, on the module's device):

    - ``times`` (T+1): ``t_i``; ``alpha_bar`` (T+1): ``1 - var(t_i)``; ``betas`` (T): ``beta_1..T``.
    - ``alphas_cumprod`` (T+1): the chain's cumulative product of ``1 - beta``, starting from
      level 0 (= 1); this is what the forward process uses (``alpha_bar`` divided by its value
      at ``t_0``, which differs from 1 by 1e-4).
    - ``posterior_mean_coef1``, ``posterior_mean_coef2``, ``posterior_variance``,
      ``posterior_log_variance_clipped`` (T): the coefficients of ``q(x_t | x_{t+1}, x0)``
      indexed by the training timestep ``t`` in ``0..T-1``.
    """

    def __init__(self, num_steps: int = 4, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        super().__init__()
        if num_steps < 1:
            raise ValueError(f"AdversarialDiffusion: num_steps must be >= 1, got {num_steps}")
        if not 0 <= beta_min < beta_max:
            raise ValueError(
                f"AdversarialDiffusion: need 0 <= beta_min < beta_max, got {beta_min}, {beta_max}"
            )
        self.num_steps = int(num_steps)
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

        times = time_grid(self.num_steps)
        alpha_bar = 1.0 - vp_variance(times, self.beta_min, self.beta_max)
        betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]  # beta_1..beta_T
        # the chain: level 0 is the data; beta of the step into level 0 is FIRST_BETA (~0)
        chain_betas = torch.cat([torch.tensor([FIRST_BETA], dtype=torch.float64), betas])
        alphas_cumprod = torch.cumprod(1.0 - chain_betas, 0)  # level 0..T

        # posterior q(x_t | x_{t+1}, x0) for t = 0..T-1 (standard DDPM posterior, step beta_{t+1})
        # with abar_t the cumulative product of (1 - beta_1..beta_t), abar_0 = 1
        step_beta = betas
        step_alpha = 1.0 - step_beta
        abar_next = torch.cumprod(step_alpha, 0)  # abar_{t+1}
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar_next[:-1]])  # abar_t
        post_var = step_beta * (1.0 - abar_prev) / (1.0 - abar_next)
        post_coef1 = step_beta * torch.sqrt(abar_prev) / (1.0 - abar_next)
        post_coef2 = (1.0 - abar_prev) * torch.sqrt(step_alpha) / (1.0 - abar_next)
        post_log_var = torch.log(post_var.clamp(min=LOG_VAR_FLOOR))

        def buf(name: str, value: torch.Tensor) -> None:
            self.register_buffer(name, value.to(torch.float32), persistent=False)

        buf("times", times)
        buf("alpha_bar", alpha_bar)
        buf("betas", betas)
        buf("chain_betas", chain_betas)
        buf("alphas_cumprod", alphas_cumprod)
        buf("sqrt_alphas_cumprod", torch.sqrt(alphas_cumprod))
        buf("sqrt_one_minus_alphas_cumprod", torch.sqrt(1.0 - alphas_cumprod))
        buf("posterior_mean_coef1", post_coef1)
        buf("posterior_mean_coef2", post_coef2)
        buf("posterior_variance", post_var)
        buf("posterior_log_variance_clipped", post_log_var)

    def extra_repr(self) -> str:
        return f"num_steps={self.num_steps}, beta_min={self.beta_min}, beta_max={self.beta_max}"

    # ------------------------------------------------------------ forward process
    def sample_timesteps(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        """Uniform training timesteps ``t`` in ``0..T-1`` (int64, shape ``(batch,)``)."""
        return torch.randint(0, self.num_steps, (batch,), device=device or self.betas.device)

    def q_sample(
        self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x_t ~ q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I)`` for levels ``t`` in 0..T."""
        if noise is None:
            noise = torch.randn_like(x0)
        mean_coef = _extract(self.sqrt_alphas_cumprod, t, x0.ndim)
        std = _extract(self.sqrt_one_minus_alphas_cumprod, t, x0.ndim)
        return mean_coef * x0 + std * noise

    def q_sample_pairs(
        self, x0: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_t, x_{t+1})`` from ``q(x_t | x0) q(x_{t+1} | x_t)``, ``t`` in 0..T-1.

        ``x_{t+1} = sqrt(1 - beta_{t+1}) x_t + sqrt(beta_{t+1}) noise`` - one forward step, so
        the pair is a sample of the joint the discriminator should accept as real.
        """
        if int(t.max()) >= self.num_steps or int(t.min()) < 0:
            raise ValueError(f"timesteps must lie in 0..{self.num_steps - 1}")
        x_t = self.q_sample(x0, t)
        beta = _extract(self.chain_betas, t + 1, x0.ndim)
        x_tp1 = torch.sqrt(1.0 - beta) * x_t + torch.sqrt(beta) * torch.randn_like(x0)
        return x_t, x_tp1

    # ----------------------------------------------------------------- posterior
    def q_posterior(
        self, x0: torch.Tensor, x_tp1: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clamped log-variance of ``q(x_t | x_{t+1}, x0)``.

        ``mean = beta_{t+1} sqrt(abar_t) / (1 - abar_{t+1}) x0
                 + (1 - abar_t) sqrt(alpha_{t+1}) / (1 - abar_{t+1}) x_{t+1}``,
        ``var = beta_{t+1} (1 - abar_t) / (1 - abar_{t+1})``.
        """
        c1 = _extract(self.posterior_mean_coef1, t, x_tp1.ndim)
        c2 = _extract(self.posterior_mean_coef2, t, x_tp1.ndim)
        mean = c1 * x0 + c2 * x_tp1
        var = _extract(self.posterior_variance, t, x_tp1.ndim)
        log_var = _extract(self.posterior_log_variance_clipped, t, x_tp1.ndim)
        return mean, var, log_var

    def sample_posterior(
        self, x0: torch.Tensor, x_tp1: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_{t+1}, x0)``; no noise is added where ``t == 0``."""
        mean, _, log_var = self.q_posterior(x0, x_tp1, t)
        noise = torch.randn_like(x_tp1)
        nonzero = (t != 0).to(x_tp1.dtype).reshape(t.shape[0], *([1] * (x_tp1.ndim - 1)))
        return mean + nonzero * torch.exp(0.5 * log_var) * noise

    # ------------------------------------------------------------------- sampler
    @torch.no_grad()
    def sample(
        self,
        predict_x0: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        shape: tuple[int, ...] | torch.Size,
        device: torch.device | None = None,
        x_T: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the reverse chain from ``x_T ~ N(0, I)``: ``T`` calls of ``predict_x0``.

        ``predict_x0(x_{t+1}, t)`` returns the generator's estimate of ``x0`` for the integer
        timesteps ``t`` (shape ``(B,)``); each step then draws ``x_t`` from the posterior, with
        no noise at the final step, so the result is the last ``x0`` estimate itself.
        """
        device = device or self.betas.device
        x = torch.randn(shape, device=device) if x_T is None else x_T
        for i in reversed(range(self.num_steps)):
            t = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)
            x0 = predict_x0(x, t)
            x = self.sample_posterior(x0, x, t)
        return x
