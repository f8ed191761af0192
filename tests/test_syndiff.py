"""SynDiff: the diffusion math against a float64 reference, the networks at paper size, the
sampler and the training step (its short training run: tests/test_method_runs.py)."""

from __future__ import annotations

import math

import pytest
import torch

from mrbench_methods import get_plugin
from mrbench_methods.nets.adversarial_diffusion import AdversarialDiffusion
from mrbench_methods.nets.losses import R1Penalty, d_loss_fake, d_loss_real, g_loss_nonsaturating
from mrbench_methods.nets.ncsnpp import NCSNpp
from mrbench_methods.nets.time_discriminator import TimeDiscriminator, minibatch_stddev

PUBLISHED_BETAS = [0.47826, 0.84921, 0.95642, 0.98740]


def reference_schedule(n: int, bmin: float = 0.1, bmax: float = 20.0) -> dict[str, list[float]]:
    """The schedule written out with Python floats (double precision)."""
    ts = [(i / n) * (1 - 1e-3) + 1e-3 for i in range(n + 1)]
    var = [1 - math.exp(-0.5 * t * t * (bmax - bmin) - t * bmin) for t in ts]
    abar = [1 - v for v in var]
    betas = [1 - abar[i] / abar[i - 1] for i in range(1, n + 1)]
    chain = [1.0]  # cumulative product of (1 - beta) from the data level
    for b in betas:
        chain.append(chain[-1] * (1 - b))
    return {"t": ts, "abar": abar, "betas": betas, "chain": chain}


def syndiff_cls():
    return get_plugin("syndiff")


# ---------------------------------------------------------------------- schedule
def test_schedule_matches_reference_and_published_betas() -> None:
    ref = reference_schedule(4)
    diff = AdversarialDiffusion(4, 0.1, 20.0)
    assert diff.betas.tolist() == pytest.approx(PUBLISHED_BETAS, abs=1e-4)
    assert ref["betas"] == pytest.approx(PUBLISHED_BETAS, abs=1e-4)
    assert diff.betas.tolist() == pytest.approx(ref["betas"], rel=1e-6)
    assert diff.times.tolist() == pytest.approx(ref["t"], rel=1e-6)
    assert diff.alpha_bar.tolist() == pytest.approx(ref["abar"], rel=1e-5)
    assert float(diff.alpha_bar[-1]) == pytest.approx(4.32e-5, rel=2e-3)
    assert diff.alphas_cumprod.tolist() == pytest.approx(ref["chain"], rel=1e-5)
    # generic in the number of steps
    ref8 = reference_schedule(8, 0.1, 20.0)
    assert AdversarialDiffusion(8).betas.tolist() == pytest.approx(ref8["betas"], rel=1e-6)


def test_bad_schedule_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="num_steps"):
        AdversarialDiffusion(0)
    with pytest.raises(ValueError, match="beta_min"):
        AdversarialDiffusion(4, 5.0, 1.0)


def test_q_sample_pairs_have_the_forward_marginals() -> None:
    torch.manual_seed(0)
    diff = AdversarialDiffusion(4)
    chain = reference_schedule(4)["chain"]
    n = 200_000
    x0 = torch.full((n, 1, 1, 1), 0.6)
    for t in range(4):
        tt = torch.full((n,), t, dtype=torch.long)
        x_t, x_tp1 = diff.q_sample_pairs(x0, tt)
        for x, level in ((x_t, t), (x_tp1, t + 1)):
            assert float(x.mean()) == pytest.approx(math.sqrt(chain[level]) * 0.6, abs=6e-3)
            assert float(x.var()) == pytest.approx(1 - chain[level], abs=1e-2)
    with pytest.raises(ValueError, match="timesteps"):
        diff.q_sample_pairs(x0[:2], torch.tensor([0, 4]))


def test_posterior_matches_gaussian_conditioning_closed_form() -> None:
    """q(x_t | x_{t+1}, x0) from Bayes' rule on the two Gaussians, computed in float64."""
    torch.manual_seed(1)
    diff = AdversarialDiffusion(4)
    ref = reference_schedule(4)
    chain, betas = ref["chain"], ref["betas"]
    x0 = torch.rand(6, 1, 5, 5, dtype=torch.float64) * 2 - 1
    x_tp1 = torch.randn(6, 1, 5, 5, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 3, 3, 1])
    mean, var, log_var = diff.q_posterior(x0.float(), x_tp1.float(), t)
    for b in range(6):
        k = int(t[b])
        abar_t, beta = chain[k], betas[k]
        alpha = 1 - beta
        # prior x_t ~ N(sqrt(abar_t) x0, 1 - abar_t); likelihood x_{t+1} ~ N(sqrt(alpha) x_t, beta)
        if k == 0:
            ref_var, ref_mean = 0.0, x0[b]
        else:
            precision = 1 / (1 - abar_t) + alpha / beta
            ref_var = 1 / precision
            ref_mean = ref_var * (
                math.sqrt(abar_t) * x0[b] / (1 - abar_t) + math.sqrt(alpha) * x_tp1[b] / beta
            )
        torch.testing.assert_close(mean[b].double(), ref_mean, rtol=1e-4, atol=1e-5)
        assert float(var[b].flatten()[0]) == pytest.approx(ref_var, rel=1e-4, abs=1e-12)
        want_log = math.log(max(ref_var, 1e-20))
        assert float(log_var[b].flatten()[0]) == pytest.approx(want_log, rel=1e-4)


def test_last_reverse_step_adds_no_noise() -> None:
    diff = AdversarialDiffusion(4)
    x0 = torch.rand(3, 1, 4, 4) * 2 - 1
    x1 = torch.randn(3, 1, 4, 4)
    t0 = torch.zeros(3, dtype=torch.long)
    a = diff.sample_posterior(x0, x1, t0)
    b = diff.sample_posterior(x0, x1, t0)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, x0, atol=1e-5, rtol=0)
    t2 = torch.full((3,), 2, dtype=torch.long)
    assert not torch.equal(diff.sample_posterior(x0, x1, t2), diff.sample_posterior(x0, x1, t2))


def test_sampler_makes_exactly_T_generator_calls_from_noise() -> None:
    diff = AdversarialDiffusion(4)
    calls: list[list[int]] = []
    seen_first: list[torch.Tensor] = []

    def predict(x_tp1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(t.tolist())
        if not seen_first:
            seen_first.append(x_tp1.clone())
        return torch.full_like(x_tp1, 0.25)

    torch.manual_seed(3)
    out = diff.sample(predict, (2, 1, 8, 8))
    assert calls == [[3, 3], [2, 2], [1, 1], [0, 0]]
    torch.manual_seed(3)
    torch.testing.assert_close(seen_first[0], torch.randn(2, 1, 8, 8))  # starts from N(0, I)
    torch.testing.assert_close(out, torch.full_like(out, 0.25), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------- networks
def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_paper_size_networks_match_published_counts_and_run_at_256px() -> None:
    gen = NCSNpp(in_ch=2, out_ch=1, image_size=256)
    n_gen = _count(gen)
    print(f"SynDiff diffusive generator (256 px): {n_gen / 1e6:.3f} M parameters")
    assert n_gen / 1e6 == pytest.approx(39.73, rel=0.01)
    assert _count(NCSNpp(image_size=64)) / 1e6 == pytest.approx(39.13, rel=0.01)
    n_disc = _count(TimeDiscriminator(in_ch=2, ngf=64, t_emb_dim=256, n_down=6))
    assert n_disc / 1e6 == pytest.approx(27.74, rel=0.01)
    gen.eval()
    with torch.no_grad():
        y = gen(torch.randn(1, 2, 256, 256), torch.tensor([3]), torch.randn(1, 100))
    assert y.shape == (1, 1, 256, 256)
    assert torch.isfinite(y).all() and float(y.abs().max()) <= 1.0


def test_paper_size_method_parameter_counts() -> None:
    method = syndiff_cls()({}, image_size=256)
    counts = {k: v / 1e6 for k, v in method.num_parameters().items()}
    assert counts["diff_a_to_b"] == pytest.approx(39.73, rel=0.01)
    assert counts["disc_diff_a"] == pytest.approx(27.74, rel=0.01)
    assert counts["cyc_a_to_b"] == pytest.approx(7.83, rel=0.01)
    assert counts["disc_cyc_b"] == pytest.approx(2.76, rel=0.01)
    # the published per-network counts sum to 156.1 M (155.5 M is quoted for the whole model)
    assert sum(counts.values()) == pytest.approx(2 * (39.73 + 27.74 + 7.83 + 2.76), rel=0.002)
    assert sum(counts.values()) == pytest.approx(155.5, rel=0.01)


def test_ncsnpp_conditioning_paths() -> None:
    torch.manual_seed(0)
    kw = dict(image_size=16, nf=8, ch_mult=(1, 2), num_res_blocks=1, z_emb_dim=16, n_mlp=1)
    net = NCSNpp(in_ch=3, nz=10, cond_channels=5, style_dim=4, **kw)
    x, t, z = torch.randn(2, 3, 16, 16), torch.tensor([0, 2]), torch.randn(2, 10)
    cond, style = torch.randn(2, 5, 8, 8), torch.randn(2, 4)
    with pytest.raises(ValueError, match="cond"):
        net(x, t, z)
    with pytest.raises(ValueError, match="style"):
        net(x, t, z, cond=cond)
    # output layers start at (near) zero; give them weight so the paths are visible
    torch.nn.init.normal_(net.conv_out.weight, 0, 0.5)
    y = net(x, t, z, cond=cond, style=style)
    assert y.shape == (2, 1, 16, 16)
    y.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.cond_proj.parameters())
    y2 = net(x, t, z, cond=cond * 2, style=style)
    y3 = net(x, t, z, cond=cond, style=style + 1)
    assert not torch.allclose(y, y2) and not torch.allclose(y, y3)
    style_only = NCSNpp(in_ch=1, nz=0, style_dim=4, **kw)
    assert style_only(torch.randn(2, 1, 16, 16), t, None, style=style).shape == (2, 1, 16, 16)


def test_minibatch_stddev_and_losses() -> None:
    x = torch.randn(6, 3, 2, 2)
    y = minibatch_stddev(x, 4)  # 6 is not divisible by 4: groups of 3
    assert y.shape == (6, 4, 2, 2)
    logits = torch.tensor([0.0, 2.0])
    assert float(d_loss_real(logits)) == pytest.approx((math.log(2) + math.log1p(math.exp(-2))) / 2)
    assert float(d_loss_fake(logits)) == pytest.approx((math.log(2) + math.log1p(math.exp(2))) / 2)
    assert float(g_loss_nonsaturating(logits)) == pytest.approx(float(d_loss_real(logits)))
    r1 = R1Penalty(gamma=1.0, every=10)
    assert [s for s in range(25) if r1.due(s)] == [0, 10, 20]
    inp = torch.randn(3, 1, 2, 2, requires_grad=True)
    out = (inp * 3).sum(dim=[1, 2, 3])  # gradient 3 everywhere: ||g||^2 = 9 * 4
    assert float(r1(out, inp)) == pytest.approx(0.5 * 36)


# ---------------------------------------------------------------------- method
def _batch(size: int, n: int = 2) -> dict[str, torch.Tensor]:
    t1 = torch.rand(n, 1, size, size) * 2 - 1
    return {"a": t1, "b": -t1, "mask_a": torch.ones_like(t1), "mask_b": torch.ones_like(t1)}


def test_translate_uses_four_generator_calls_and_is_seeded() -> None:
    cls = syndiff_cls()
    torch.manual_seed(0)
    method = cls(cls.tiny_params, image_size=16).eval()
    calls = []
    hook = method.diff_a_to_b.register_forward_hook(
        lambda mod, args, out: calls.append(args[1].tolist())
    )
    x = _batch(16)["a"]
    torch.manual_seed(5)
    a = method.translate(x, "a_to_b")
    hook.remove()
    assert calls == [[3, 3], [2, 2], [1, 1], [0, 0]]
    assert a.shape == x.shape and float(a.abs().max()) <= 1.0
    torch.manual_seed(5)
    torch.testing.assert_close(method.translate(x, "a_to_b"), a)
    with pytest.raises(ValueError, match="direction"):
        method.translate(x, "t1_to_pd")


def test_train_step_updates_every_network_in_the_reference_order() -> None:
    cls = syndiff_cls()
    torch.manual_seed(0)
    method = cls(cls.tiny_params, image_size=16)
    before = {k: [p.detach().clone() for p in v.parameters()] for k, v in method.named_children()}
    before.pop("diffusion")  # the schedule: buffers only
    out0 = method.train_step(_batch(16), 0)
    out1 = method.train_step(_batch(16), 1)
    assert "r1" in out0 and "r1" not in out1  # lazy R1: steps 0, 10, 20, ...
    for key in ("D_diff", "D_cyc", "G", "G_adv_diff", "G_adv_cyc", "L1_x0", "L1_cycle"):
        assert math.isfinite(out1[key])
    for name, params in before.items():
        after = list(getattr(method, name).parameters())
        assert any(not torch.equal(a, b) for a, b in zip(after, params, strict=True)), name
    assert all(p.requires_grad for p in method.parameters())
    assert set(method.ema_modules()) == {"diff_a_to_b", "diff_b_to_a"}
    assert set(method.optimizers()) == {"G_diff", "G_cyc", "D_diff", "D_cyc"}
    assert cls.training_defaults == {"lr_schedule": "cosine", "lr_min": 1e-5, "ema_decay": 0.999}


def test_published_defaults_and_bad_params() -> None:
    cls = syndiff_cls()
    d = cls.defaults
    assert (d["lr_g"], d["lr_d"], d["beta1"], d["beta2"]) == (1.6e-4, 1e-4, 0.5, 0.9)
    assert (d["lambda_l1"], d["lambda_cycle"], d["r1_gamma"], d["r1_every"]) == (0.5, 0.5, 1.0, 10)
    assert (d["num_steps"], d["beta_min"], d["beta_max"], d["nz"]) == (4, 0.1, 20.0, 100)
    assert d["unet_mult"] == [1, 1, 2, 2, 4, 4] and d["unet_ch"] == 64 and d["n_blocks_cycle"] == 6
    with pytest.raises(ValueError, match="unknown parameter"):
        cls({"learning_rate": 1.0}, image_size=32)
    with pytest.raises(ValueError, match="tdis_down"):
        cls({**cls.tiny_params, "tdis_down": 5}, image_size=32)
    with pytest.raises(ValueError, match="unet_mult"):
        cls({**cls.tiny_params, "unet_mult": [1, 1, 1, 1, 1, 1]}, image_size=16)
