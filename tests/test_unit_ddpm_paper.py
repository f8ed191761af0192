"""UNIT-DDPM against the paper's algorithms as transcribed in docs/methods/unit_ddpm.md: one
timestep per training iteration, EMA only on the networks that sample, the loss scaling, and what
the release time means on a respaced chain."""

from __future__ import annotations

import torch
from conftest import seeded

from mrbench_methods.unit_ddpm import UnitDDPM


def tiny(**over) -> UnitDDPM:
    return UnitDDPM({**UnitDDPM.tiny_params, **over}, image_size=32)


def _batch(n: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "a": torch.rand(n, 1, 32, 32, generator=g) * 2 - 1,
        "b": torch.rand(n, 1, 32, 32, generator=g) * 2 - 1,
    }


def test_both_pseudo_pairs_share_the_iterations_timestep() -> None:
    """Algorithm 1 draws one ``t`` per iteration and noises both pseudo-pairs to it."""
    torch.manual_seed(0)
    m = tiny()
    seen: list[torch.Tensor] = []
    for net in (m.eps_a, m.eps_b):
        net.register_forward_pre_hook(lambda mod, args: seen.append(args[1].clone()))
    m.train_step(_batch(), 0)
    assert len(seen) == 4  # two denoiser passes, two translator-loss passes (mode "target")
    for t in seen[1:]:
        assert torch.equal(t, seen[0])
    assert len(set(seen[0].tolist())) > 1  # still one draw per batch element, as in DDPM


def test_ema_covers_only_the_denoisers_that_sample() -> None:
    """DDPM averages the sampling network; the translators take no part in sampling, and the
    collapse check must see the translators that train the denoisers."""
    m = tiny()
    assert set(m.ema_modules()) == {"eps_a", "eps_b"}


def test_cycle_term_is_the_papers_l1_norm_over_the_pixel_count() -> None:
    """The cycle term is the paper's L1 norm divided by the pixel count of the batch, the same
    count that divides the paper's squared L2 norms of the noise terms (per-pixel means of
    tensors of one shape), so lambda_dsm : lambda_cyc weighs the two as in the paper."""
    torch.manual_seed(0)
    m = tiny()
    batch = _batch(2)
    x1, x2 = batch["a"], batch["b"]
    with torch.no_grad():
        norm = (m.g_a(m.g_b(x1)) - x1).abs().sum() + (m.g_b(m.g_a(x2)) - x2).abs().sum()
    logs = m.train_step(batch, 0)
    assert abs(logs["loss_cycle"] - float(norm) / x1.numel()) < 1e-5


def test_a_ten_step_chain_with_release_at_100_is_joint_only_at_its_last_step() -> None:
    """With 10 respaced steps the visited steps are 999, 888, ..., 0; only step 0 is at or under
    the release time 100, and there the target chain is conditioned on the re-noised source as
    before the release, so the output equals that of never releasing."""
    m = tiny(sample_steps=10, release_time=100)
    assert m.network_evaluations == 11
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    released = seeded(5, m.translate, x, "a_to_b")
    m.params["release_time"] = 0
    never = seeded(5, m.translate, x, "a_to_b")
    assert torch.equal(released, never)
