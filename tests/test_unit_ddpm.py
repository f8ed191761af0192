"""UNIT-DDPM: the diffusion maths against a float64 reference, the sampler's step count and
determinism (its short training run: tests/test_method_runs.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import seeded

from mrbench_methods.base import get_plugin
from mrbench_methods.nets.ddpm_unet import DDPMUNet
from mrbench_methods.nets.gaussian_diffusion import GaussianDiffusion, space_timesteps
from mrbench_methods.unit_ddpm import UnitDDPM

T = 1000


def reference_schedule(n: int = T, b0: float = 1e-4, b1: float = 0.02) -> dict[str, np.ndarray]:
    betas = np.array([b0 + (b1 - b0) * i / (n - 1) for i in range(n)], dtype=np.float64)
    abar = np.empty(n)
    prod = 1.0
    for i, b in enumerate(betas):
        prod *= 1.0 - b
        abar[i] = prod
    return {"betas": betas, "abar": abar}


def bayes_posterior(x0, xt, abar_prev, alpha, beta):
    """q(x_{t-1} | x_t, x_0) as the product of N(sqrt(abar_prev) x0, 1 - abar_prev) and
    N(x_t; sqrt(alpha) x_{t-1}, beta), written as precisions (independent of the closed form)."""
    prec = 1.0 / (1.0 - abar_prev) + alpha / beta
    var = 1.0 / prec
    mean = var * (math.sqrt(abar_prev) * x0 / (1.0 - abar_prev) + math.sqrt(alpha) * xt / beta)
    return mean, var


def draws(seed: int, shape: tuple[int, ...]) -> tuple[torch.Generator, torch.Tensor, torch.Tensor]:
    """A seeded generator and its first two float64 draws: images in [-1, 1], then N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1
    return g, x, torch.randn(*shape, generator=g, dtype=torch.float64)


def test_linear_schedule_matches_float64_reference() -> None:
    ref = reference_schedule()
    d = GaussianDiffusion.linear(T, 1e-4, 0.02)
    assert d.betas.dtype == torch.float64
    np.testing.assert_allclose(d.betas.numpy(), ref["betas"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(d.alphas_cumprod.numpy(), ref["abar"], rtol=1e-12)
    assert d.betas[0].item() == pytest.approx(1e-4) and d.betas[-1].item() == pytest.approx(0.02)
    # The end of the chain is (almost) pure noise: abar_T ~ 4e-5.
    assert 1e-5 < d.alphas_cumprod[-1].item() < 1e-4


def test_q_sample_matches_reference() -> None:
    ref = reference_schedule()
    d = GaussianDiffusion.linear(T)
    _, x0, noise = draws(0, (5, 1, 4, 4))
    t = torch.tensor([0, 1, 250, 998, 999])
    out = d.q_sample(x0, t, noise).numpy()
    for b, ti in enumerate(t.tolist()):
        a = ref["abar"][ti]
        expect = math.sqrt(a) * x0[b].numpy() + math.sqrt(1 - a) * noise[b].numpy()
        np.testing.assert_allclose(out[b], expect, rtol=1e-12, atol=1e-12)
    # float32 images get a float32 result
    assert d.q_sample(x0.float(), t, noise.float()).dtype == torch.float32


def test_posterior_matches_bayes_reference() -> None:
    ref = reference_schedule()
    d = GaussianDiffusion.linear(T)
    g, x0, xt = draws(1, (4, 1, 3, 3))
    t = torch.tensor([1, 10, 500, 999])
    mean, var, logvar = d.q_posterior_mean_variance(x0, xt, t)
    for b, ti in enumerate(t.tolist()):
        beta = ref["betas"][ti]
        m_ref, v_ref = bayes_posterior(
            x0[b].numpy(), xt[b].numpy(), ref["abar"][ti - 1], 1 - beta, beta
        )
        np.testing.assert_allclose(mean[b].numpy(), m_ref, rtol=1e-9, atol=1e-12)
        assert var[b].item() == pytest.approx(v_ref, rel=1e-9)
        assert logvar[b].item() == pytest.approx(math.log(v_ref), rel=1e-9)
    # at the first step the posterior mean is x0 itself
    mean0, var0, _ = d.q_posterior_mean_variance(x0, xt, torch.zeros(4, dtype=torch.long))
    np.testing.assert_allclose(mean0.numpy(), x0.numpy(), atol=1e-12)
    assert float(var0.abs().max()) == 0.0
    # eps -> x0 inverts q_sample exactly
    noise = torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64)
    xt2 = d.q_sample(x0, t, noise)
    np.testing.assert_allclose(d.predict_x0_from_eps(xt2, t, noise).numpy(), x0.numpy(), atol=1e-9)


@pytest.mark.parametrize("steps", [1, 2, 10, 37, 1000])
def test_space_timesteps(steps: int) -> None:
    use = space_timesteps(T, steps)
    assert len(use) == steps
    assert use == sorted(set(use))
    assert use[-1] == T - 1
    if steps > 1:
        assert use[0] == 0


def test_space_timesteps_rejects_bad_counts() -> None:
    for bad in (0, T + 1):
        with pytest.raises(ValueError, match="sample steps"):
            space_timesteps(T, bad)


def test_respaced_schedule_keeps_abar_and_uses_its_own_posterior() -> None:
    ref = reference_schedule()
    d = GaussianDiffusion.linear(T)
    r = d.respaced(10)
    use = space_timesteps(T, 10)
    assert r.num_timesteps == 10
    assert r.timestep_map.tolist() == use
    np.testing.assert_allclose(r.alphas_cumprod.numpy(), ref["abar"][use], rtol=1e-12)
    # posterior over the big step s_{k-1} <- s_k, from the respaced alphas
    x0 = torch.full((1, 1, 1, 1), 0.3, dtype=torch.float64)
    xt = torch.full((1, 1, 1, 1), -0.7, dtype=torch.float64)
    k = 5
    a_k, a_prev = ref["abar"][use[k]], ref["abar"][use[k - 1]]
    m_ref, v_ref = bayes_posterior(0.3, -0.7, a_prev, a_k / a_prev, 1 - a_k / a_prev)
    mean, var, _ = r.q_posterior_mean_variance(x0, xt, torch.tensor([k]))
    assert mean.item() == pytest.approx(m_ref, rel=1e-9)
    assert var.item() == pytest.approx(v_ref, rel=1e-9)


def test_unet_paper_size_and_shapes() -> None:
    # DDPM's 256 px network (1-channel out, 2-channel in): the published ~114 M parameters.
    big = DDPMUNet(2, 1, 128, (1, 1, 2, 2, 4, 4), 2, (16,), 0.0, 256)
    n = sum(p.numel() for p in big.parameters())
    assert 113.5e6 < n < 113.8e6
    del big
    small = DDPMUNet(2, 1, 8, (1, 2), 1, (16,), 0.1, 32)
    out = small(torch.randn(3, 2, 32, 32), torch.tensor([0, 5, 999]))
    assert out.shape == (3, 1, 32, 32)
    with pytest.raises(ValueError, match="divisible"):
        DDPMUNet(2, 1, 8, (1, 2, 2, 2), 1, (), 0.0, 20)


def tiny(**over) -> UnitDDPM:
    return UnitDDPM({**UnitDDPM.tiny_params, **over}, image_size=32)


def test_registered_and_params_validated() -> None:
    assert get_plugin("unit_ddpm") is UnitDDPM
    with pytest.raises(ValueError, match="unknown parameter"):
        UnitDDPM({"sample_step": 3}, image_size=32)
    with pytest.raises(ValueError, match="sample_steps"):
        tiny(sample_steps=0)
    with pytest.raises(ValueError, match="release_time"):
        tiny(release_time=T + 1)
    with pytest.raises(ValueError, match="translator_dsm"):
        tiny(translator_dsm="nope")


class _Counter:
    def __init__(self, net: torch.nn.Module) -> None:
        self.timesteps: list[int] = []
        net.register_forward_hook(self)

    def __call__(self, module, args, output) -> None:
        self.timesteps.append(int(args[1][0]))


@pytest.mark.parametrize(("steps", "release"), [(7, 0), (7, 1000), (12, 300), (1, 0)])
def test_sampler_visits_requested_steps(steps: int, release: int) -> None:
    torch.manual_seed(0)
    m = tiny(sample_steps=steps, release_time=release)
    src_count, dst_count = _Counter(m.eps_a), _Counter(m.eps_b)
    out = m.translate(torch.rand(2, 1, 32, 32) * 2 - 1, "a_to_b")
    assert out.shape == (2, 1, 32, 32)
    use = space_timesteps(T, steps)
    assert dst_count.timesteps == use[::-1]  # one target-denoiser call per step, T-1 first
    released = [t for t in use[::-1] if t + 1 <= release]
    assert src_count.timesteps == released  # the source chain runs only after the release
    assert m.sampling_steps == steps
    assert m.network_evaluations == steps + len(released)


def test_sampler_recovers_x0_with_an_exact_noise_predictor() -> None:
    """With the true noise as prediction every reverse step lands on the right x0."""
    m = tiny(sample_steps=6, release_time=400)
    d = m.diffusion
    target = torch.rand(2, 1, 32, 32) * 1.6 - 0.8
    source = torch.rand(2, 1, 32, 32) * 2 - 1

    class Exact(torch.nn.Module):
        def __init__(self, x0: torch.Tensor) -> None:
            super().__init__()
            self.x0 = x0

        def forward(self, inp: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            a = d.sqrt_alphas_cumprod[t].float().view(-1, 1, 1, 1)
            s = d.sqrt_one_minus_alphas_cumprod[t].float().view(-1, 1, 1, 1)
            return (inp[:, :1] - a * self.x0) / s

    m.eps_b, m.eps_a = Exact(target), Exact(source)
    out = m.translate(source, "a_to_b")
    torch.testing.assert_close(out, target, atol=1e-5, rtol=0)


def test_sampling_is_deterministic_given_a_seed() -> None:
    m = tiny(sample_steps=5, release_time=500)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    a, b, c = (seeded(s, m.translate, x, "b_to_a") for s in (11, 11, 12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(m.sample(x, "a_to_b", g1), m.sample(x, "a_to_b", g2))
