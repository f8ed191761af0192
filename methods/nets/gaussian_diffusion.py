"""The Gaussian diffusion of DDPM (Ho et al. 2020) and its respacing (Nichol & Dhariwal 2021).

Forward process ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` with a fixed variance
schedule ``beta_t``; the reverse step uses the posterior ``q(x_{t-1} | x_t, x_0)`` with ``x_0``
estimated from a predicted noise ``eps``:

    x0_hat     = sqrt(1 / abar_t) x_t - sqrt(1 / abar_t - 1) eps
    mean       = c1_t x0_hat + c2_t x_t,   c1_t = beta_t sqrt(abar_{t-1}) / (1 - abar_t)
                                           c2_t = (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t)
    variance   = beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)

Indices are 0-based: index ``i`` is the paper's step ``t = i + 1``; ``abar_{-1} = 1``.

Respacing: a schedule of ``K`` steps uses a subset ``S = {s_0 < ... < s_{K-1}}`` of the original
indices and the betas ``beta'_k = 1 - abar_{s_k} / abar_{s_{k-1}}`` that keep ``abar`` identical
on ``S``; the network is still called with the original index ``s_k`` (``timestep_map``). This is
improved-DDPM's ``SpacedDiffusion``: an ancestral DDPM sampler over fewer, larger steps.

All schedule arrays are float64; values are cast to the image dtype when they are used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def linear_betas(
    num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> torch.Tensor:
    """DDPM's linear schedule (``1e-4 .. 0.02`` for ``T = 1000``), float64."""
    if num_timesteps < 1:
        raise ValueError(f"diffusion: num_timesteps must be >= 1, got {num_timesteps}")
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(
            f"diffusion: need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}"
        )
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def space_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``steps`` original indices, evenly strided over ``[0, T-1]``, always ending at ``T-1``.

    With ``steps >= 2`` both ends are included (the first reverse step starts from pure noise at
    ``T-1``, the last one lands on ``x_0``); ``steps == 1`` uses ``[T-1]`` only.
    """
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"diffusion: sample steps must be in [1, {num_timesteps}], got {steps}")
    if steps == 1:
        return [num_timesteps - 1]
    stride = (num_timesteps - 1) / (steps - 1)
    out = sorted({round(i * stride) for i in range(steps)})
    if len(out) != steps:  # cannot happen for steps <= T, kept as a guard
        raise ValueError(f"diffusion: cannot space {steps} steps over {num_timesteps}")
    return out


def _extract(arr: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``arr[t]`` shaped ``(B, 1, 1, 1)`` in ``x``'s dtype and device."""
    out = arr.to(t.device)[t].to(device=x.device, dtype=x.dtype)
    return out.view(-1, *([1] * (x.dim() - 1)))


class GaussianDiffusion:
    """Schedule quantities and the forward / posterior / reverse-step formulas.

    ``timestep_map[k]`` is the original index the network sees at step ``k`` of this schedule
    (the identity for an unrespaced schedule).
    """

    def __init__(self, betas: torch.Tensor, timestep_map: Sequence[int] | None = None) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.dim() != 1 or betas.numel() < 1:
            raise ValueError("diffusion: betas must be a non-empty 1-D tensor")
        if bool((betas <= 0).any()) or bool((betas > 1).any()):
            raise ValueError("diffusion: betas must lie in (0, 1]")
        self.betas = betas
        self.num_timesteps = int(betas.numel())
        tm = list(range(self.num_timesteps)) if timestep_map is None else list(timestep_map)
        if len(tm) != self.num_timesteps:
            raise ValueError("diffusion: timestep_map must have one entry per step")
        self.timestep_map = torch.tensor(tm, dtype=torch.long)

        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        self.alphas_cumprod_prev = torch.cat(
            [torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]]
        )
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        self.sqrt_recip_alphas_cumprod = (1.0 / self.alphas_cumprod).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / self.alphas_cumprod - 1.0).sqrt()
        self.posterior_variance = (
            betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        )
        # beta~_0 = 0; DDPM/improved-DDPM clip the log at the first step with beta~_1.
        first = self.posterior_variance[1] if self.num_timesteps > 1 else self.betas[0]
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([first.view(1), self.posterior_variance[1:]])
        )
        self.posterior_mean_coef1 = (
            betas * self.alphas_cumprod_prev.sqrt() / (1.0 - self.alphas_cumprod)
        )
        self.posterior_mean_coef2 = (
            (1.0 - self.alphas_cumprod_prev) * self.alphas.sqrt() / (1.0 - self.alphas_cumprod)
        )

    @classmethod
    def linear(
        cls, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> GaussianDiffusion:
        return cls(linear_betas(num_timesteps, beta_start, beta_end))

    def respaced(self, steps: int) -> GaussianDiffusion:
        """The same process visited at ``steps`` evenly strided indices (see module docstring)."""
        use = space_timesteps(self.num_timesteps, steps)
        new_betas, last = [], 1.0
        for i in use:
            abar = float(self.alphas_cumprod[i])
            new_betas.append(1.0 - abar / last)
            last = abar
        base_map = self.timestep_map.tolist()
        return GaussianDiffusion(
            torch.tensor(new_betas, dtype=torch.float64), [base_map[i] for i in use]
        )

    # ------------------------------------------------------------------ forward
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise`` (``t``: step indices, shape (B,))."""
        return (
            _extract(self.sqrt_alphas_cumprod, t, x0) * x0
            + _extract(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    # ---------------------------------------------------------------- posterior
    def q_posterior_mean_variance(
        self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of ``q(x_{t-1} | x_t, x_0)``."""
        mean = (
            _extract(self.posterior_mean_coef1, t, xt) * x0
            + _extract(self.posterior_mean_coef2, t, xt) * xt
        )
        var = _extract(self.posterior_variance, t, xt)
        logvar = _extract(self.posterior_log_variance_clipped, t, xt)
        return mean, var, logvar

    def predict_x0_from_eps(
        self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor
    ) -> torch.Tensor:
        return (
            _extract(self.sqrt_recip_alphas_cumprod, t, xt) * xt
            - _extract(self.sqrt_recipm1_alphas_cumprod, t, xt) * eps
        )

    # ------------------------------------------------------------------ reverse
    def p_mean_variance(
        self, eps: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, clip_denoised: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``p(x_{t-1} | x_t)`` from predicted noise, and ``x0_hat``.

        The variance is fixed to the posterior variance ``beta~_t`` (DDPM's "fixed small").
        ``clip_denoised`` clamps ``x0_hat`` to the data range ``[-1, 1]`` first.
        """
        x0 = self.predict_x0_from_eps(xt, t, eps)
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
        mean, _, logvar = self.q_posterior_mean_variance(x0, xt, t)
        return mean, logvar, x0

    def p_sample(
        self,
        eps: torch.Tensor,
        xt: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
        clip_denoised: bool = True,
    ) -> torch.Tensor:
        """One ancestral step ``x_{t-1} = mean + exp(logvar / 2) noise`` (no noise at ``t = 0``)."""
        mean, logvar, _ = self.p_mean_variance(eps, xt, t, clip_denoised)
        nonzero = (t != 0).to(xt.dtype).view(-1, *([1] * (xt.dim() - 1)))
        return mean + nonzero * torch.exp(0.5 * logvar) * noise

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """Original indices the network sees for step indices ``t`` of this schedule."""
        return self.timestep_map.to(t.device)[t]

    def sample_loop(
        self,
        eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        shape: Sequence[int],
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
        clip_denoised: bool = True,
    ) -> torch.Tensor:
        """Plain ancestral sampling from ``N(0, I)``; ``eps_fn(x_t, original_t)`` predicts noise."""
        x = torch.randn(*shape, device=device, generator=generator)
        for k in reversed(range(self.num_timesteps)):
            t = torch.full((shape[0],), k, device=device, dtype=torch.long)
            eps = eps_fn(x, self.model_timesteps(t))
            noise = torch.randn(*shape, device=device, generator=generator)
            x = self.p_sample(eps, x, t, noise, clip_denoised)
        return x
