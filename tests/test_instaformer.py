"""InstaFormer: official sizes without the box branches, its blocks (blur pooling, token AdaIN,
PatchNCE), the update order and the test-time style (the short run, which learns the phantom's
contrast without reading targets: tests/test_method_runs.py)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import check_test_time_style, record_steps, unpaired_batch

from mrbench_methods import get_plugin
from mrbench_methods.nets.adain import token_adain
from mrbench_methods.nets.antialias import BlurDownsample, BlurUpsample, binomial_kernel
from mrbench_methods.nets.instaformer import InstaFormerGenerator, sinusoidal_positions
from mrbench_methods.nets.patchgan import PatchDiscriminator
from mrbench_methods.nets.patchnce import PatchSampleMLP, patch_nce_loss


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_size_parameter_counts_match_the_official_model() -> None:
    # REFERENCES 3b: 129.4 M per direction, of which 26.1 M box-only: 103.4 M without them
    cls = get_plugin("instaformer")
    with torch.device("meta"):
        model = cls({}, image_size=256)
    counts = model.num_parameters()
    for d in ("a_to_b", "b_to_a"):
        assert counts[f"G_{d}"] == pytest.approx(103.4e6, rel=0.005)
    for m in ("a", "b"):
        assert counts[f"D_{m}"] == pytest.approx(2.76e6, rel=0.005)
    parts = {n: _count(c) for n, c in model.G_a_to_b.named_children()}
    assert parts["mlp_adain"] == 8 * 256 + 256 + 256 * 256 + 256 + 256 * 2048 + 2048
    assert parts["transformer"] == 6 * (1024 * 3072 + 3072 + 1024 * 1024 + 1024 + 2 * 4096 * 1024
                                        + 4096 + 1024)  # fmt: skip
    # the PatchGAN of CUT/InstaFormer: BatchNorm, blur pooling
    assert _count(PatchDiscriminator(1, 64, 3, norm="batch", antialias=True)) == 2_763_585


def test_token_grid_and_positions_at_paper_size() -> None:
    with torch.device("meta"):
        gen = InstaFormerGenerator(256)
    assert gen.pos_embed.shape == (1, 64, 1024)  # (256 / 4 / 8)^2 tokens
    pos = sinusoidal_positions(64, 8, 1024)
    assert torch.isfinite(pos).all() and pos.shape == (1, 64, 1024)
    # the two box quarters are constant (a patch-sized box), the row/column quarters vary
    assert torch.allclose(pos[0, :, 512:], pos[0, :1, 512:].expand(64, -1))
    assert not torch.allclose(pos[0, :, :256], pos[0, :1, :256].expand(64, -1))
    with pytest.raises(ValueError, match="divisible"):
        InstaFormerGenerator(48, ngf=4, embed_dim=32, embed_down=3)


def test_blur_pooling_keeps_constants_and_resamples_by_two() -> None:
    assert torch.equal(binomial_kernel(3), torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16)
    x = torch.full((1, 3, 8, 8), 0.7)
    down, up = BlurDownsample(3), BlurUpsample(3)
    torch.testing.assert_close(down(x), torch.full((1, 3, 4, 4), 0.7))
    torch.testing.assert_close(up(x), torch.full((1, 3, 16, 16), 0.7))
    # shift a checkerboard by one pixel: a plain stride-2 subsample flips, blur pooling does not
    board = (torch.arange(8)[:, None] + torch.arange(8)[None]) % 2
    board = board.float()[None, None]
    shifted = board.roll(1, dims=3)
    plain = (board[..., ::2, ::2] - shifted[..., ::2, ::2]).abs().mean()
    blur = BlurDownsample(1)
    assert (blur(board) - blur(shifted)).abs().mean() < 0.3 * plain


def test_token_adain_sets_token_statistics() -> None:
    x = torch.randn(2, 10, 6) * 3 + 1
    w, b = torch.rand(2, 6) + 0.5, torch.randn(2, 6)
    out = token_adain(x, w, b)
    torch.testing.assert_close(out.mean(1), b, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(1, unbiased=False), w, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="token_adain"):
        token_adain(x, w[:, :3], b)


def test_patch_nce_loss_known_values() -> None:
    p, dim = 4, 8
    keys = torch.eye(dim)[:p].repeat(2, 1)  # 2 images x 4 orthonormal patches
    tau = 0.07
    # query at 45 degrees to its key, orthogonal to the others: positive 0.707 / tau, negatives
    # 0 (the masked diagonal -10 / tau)
    q = (keys + torch.eye(dim)[p:].repeat(2, 1)) / math.sqrt(2)
    for t in (1.0, 0.5):
        pos = math.exp(math.sqrt(0.5) / t)
        want = -math.log(pos / (pos + math.exp(-10 / t) + p - 1))
        assert patch_nce_loss(q, keys, 2, t).item() == pytest.approx(want, rel=1e-5)
    # query orthogonal to every key: chance level log(p + 1) up to the masked diagonal
    q = torch.eye(dim)[p:].repeat(2, 1)
    chance = -math.log(1 / (1 + math.exp(-10 / tau) + p - 1))
    assert patch_nce_loss(q, keys, 2, tau).item() == pytest.approx(chance, rel=1e-5)
    # the heads sample the same positions for queries and keys; outputs are unit vectors
    heads = PatchSampleMLP([3, 5], nc=16)
    feats = [torch.randn(2, 3, 6, 6), torch.randn(2, 5, 4, 4)]
    k, ids = heads(feats, 10)
    q2, ids2 = heads(feats, 10, ids)
    assert [len(i) for i in ids] == [10, 10] and all(
        torch.equal(a, c) for a, c in zip(ids, ids2, strict=True)
    )
    assert k[0].shape == (20, 16) and k[1].shape == (20, 16)
    # unit vectors up to the official epsilon (x / (||x|| + 1e-7), with ||x|| ~ 1e-4 here)
    torch.testing.assert_close(k[0].norm(dim=1), torch.ones(20), rtol=0, atol=1e-2)


def test_published_recipe_and_update_order() -> None:
    cls = get_plugin("instaformer")
    d = cls.defaults
    assert (d["lambda_gan"], d["lambda_recon"], d["lambda_style"], d["lambda_nce"]) == (
        1,
        10,
        10,
        2,
    )
    assert (d["nce_layers"], d["num_patches"], d["nce_tau"]) == ([0, 4, 8], 256, 0.07)
    assert (d["embed_dim"], d["depth"], d["heads"], d["mlp_dim"], d["style_dim"]) == (
        1024, 6, 4, 4096, 8)  # fmt: skip
    assert cls.training_defaults["batch_size"] == 5
    assert "instance" not in " ".join(d) and any("box" in s for s in cls.deviations)
    torch.manual_seed(0)
    model = cls(cls.tiny_params, image_size=32)
    opts = model.optimizers()
    assert opts["G"].param_groups[0]["lr"] == opts["D"].param_groups[0]["lr"] == 2e-4
    assert opts["G"].param_groups[0]["betas"] == (0.5, 0.999)
    calls = record_steps(opts)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = model.train_step(unpaired_batch(2), 0)
    assert calls == ["D", "G", "F"]  # discriminator first, then generator and heads
    for d in ("a_to_b", "b_to_a"):
        assert losses[f"nce_{d}"] > 0 and losses[f"recon_{d}"] > 0
    after = model.state_dict()
    for prefix in ("G_a_to_b.", "G_b_to_a.", "D_a.", "D_b.", "F_a_to_b.", "F_b_to_a."):
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(prefix))


def test_mean_style_comes_from_training_slices_and_prior_is_an_option() -> None:
    def codes(model, slices):  # the style encoder of each direction on its target's slices
        yield model.G_a_to_b.style(torch.cat([b["b"] for b in slices]))
        yield model.G_b_to_a.style(torch.cat([b["a"] for b in slices]))

    cls = check_test_time_style("instaformer", 2, codes)
    with pytest.raises(ValueError, match="nce_layers"):
        cls({**cls.tiny_params, "nce_layers": [0, 40]}, image_size=32)
