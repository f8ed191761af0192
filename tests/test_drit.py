"""DRIT++: the official networks at paper size, its update schedule and its test-time attribute
code (its short demo-size run: tests/test_method_runs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import seeded
from torch import nn

from mrbench_methods import get_plugin
from mrbench_methods.nets.drit import (
    AttributeEncoder,
    ContentDiscriminator,
    LayerNorm,
    MultiScaleDiscriminator,
    fit_content_discriminator,
    fit_multiscale,
)

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


def drit_cls():
    return get_plugin("drit")


def build(seed: int = 0, size: int = SIZE, **params):
    cls = drit_cls()
    torch.manual_seed(seed)
    return cls({**cls.tiny_params, **params}, image_size=size)


def batch(seed: int, b: int = 2, size: int = SIZE) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tissue = nn.functional.interpolate(torch.rand(b, 1, 4, 4, generator=g), size=size)
    return {"a": tissue * 2 - 1, "b": (1 - tissue) * 2 - 1}


# --------------------------------------------------------------------- paper size
def test_paper_size_parameter_counts_match_the_official_classes() -> None:
    """REFERENCES 3b: content encoder 9.01 M (both private encoders and the shared block, as the
    official ``E_content`` holds them), attribute encoder 2.68 M, generator 9.56 M,
    discriminators 43.7 M in all (four 3-scale image discriminators and D_c)."""
    with torch.device("meta"):
        model = drit_cls()({}, image_size=256)
    counts = model.num_parameters()
    assert counts["content_encoder"] / 1e6 == pytest.approx(9.01, rel=0.005)
    assert counts["attribute_encoder"] / 1e6 == pytest.approx(2.68, rel=0.005)
    assert counts["generator"] / 1e6 == pytest.approx(9.56, rel=0.005)
    dis = counts["dis_enc"] + counts["dis_rand"] + counts["content_dis"]
    assert dis / 1e6 == pytest.approx(43.7, rel=0.005)
    # the exact figures of the official classes (counted by hand from their layers)
    assert (counts["content_encoder"], counts["attribute_encoder"], counts["generator"]) == (
        9_005_568,
        2_684_064,
        9_564_386,
    )


def test_paper_networks_follow_the_official_code() -> None:
    model = drit_cls()({}, image_size=256)
    net = model.disentangler
    x = torch.zeros(1, 1, 256, 256)
    with torch.no_grad():
        assert net.content(x, "a").shape == (1, 256, 64, 64)
        # D_c at 256 px: three 7x7 stride-2 convs (64 -> 30 -> 13 -> 5), a 4x4 conv: 2 x 2 logits
        assert model.content_dis(torch.zeros(1, 256, 64, 64)).shape == (1, 1, 2, 2)
        outs = model.dis_enc["a"](x)
    assert [o.shape[-1] for o in outs] == [16, 8, 4]  # 3 scales, 4 stride-2 layers each
    # decoder upsampling: transposed conv + layer norm (no instance norm), 272 -> 136 -> 72
    dec = net.dec["a"]
    assert [up.body[0].in_channels for up in dec.ups] == [272, 144]
    assert all(isinstance(up.body[1], LayerNorm) for up in dec.ups)
    # no normalisation in any discriminator (the official code never applies it)
    for d in (model.dis_enc, model.dis_rand, model.content_dis):
        assert not any(isinstance(m, nn.InstanceNorm2d | nn.BatchNorm2d) for m in d.modules())
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in dec.ups.modules())
    # attribute encoder: the 4x4 stride-2 conv feeds the first block directly (no activation)
    enc = net.enc_attr["a"]
    assert isinstance(enc, AttributeEncoder)
    assert isinstance(enc.net[0], nn.Conv2d) and not isinstance(enc.net[1], nn.LeakyReLU)
    # official recipe: Adam(0.5, 0.999), wd 1e-4, lr 1e-4 (D_c 4e-5), linear decay, batch 2
    for name, opt in model.optimizers().items():
        for group in opt.param_groups:
            assert group["betas"] == (0.5, 0.999) and group["weight_decay"] == 1e-4
            assert group["lr"] == (4e-5 if name == "content_dis" else 1e-4)
    assert drit_cls().training_defaults == {
        "lr_schedule": "linear",
        "lr_decay_start": 0.5,
        "batch_size": 2,
    }
    conv_std = net.enc_content["a"].net[0].weight.std().item()
    assert conv_std == pytest.approx(0.02, rel=0.1)  # N(0, 0.02) conv initialisation


def test_small_images_fit_the_discriminators() -> None:
    assert fit_multiscale(256, 4, 3) == (4, 3)
    assert fit_multiscale(32, 3, 3) == (3, 3)
    assert fit_multiscale(16, 3, 3) == (3, 2)
    assert fit_multiscale(4, 4, 3) == (2, 1)
    assert fit_content_discriminator(64, 3, 7, 4) == (3, 4)
    assert fit_content_discriminator(54, 3, 7, 4) == (3, 4)  # the official 216 px crop: 1 x 1
    assert fit_content_discriminator(8, 3, 7, 4) == (1, 2)
    assert fit_content_discriminator(4, 3, 7, 4) == (0, 4)
    for size, (layers, scales) in ((16, (3, 2)), (4, (2, 1))):
        outs = MultiScaleDiscriminator(1, 4, layers, scales)(torch.zeros(1, 1, size, size))
        assert len(outs) == scales and all(o.shape[-1] >= 1 for o in outs)
    for side in (64, 54, 8, 4):
        n_down, final = fit_content_discriminator(side, 3, 7, 4)
        out = ContentDiscriminator(8, 8, n_down, 7, final)(torch.zeros(1, 8, side, side))
        assert out.shape[-1] >= 1


# ----------------------------------------------------------------------- schedule
def _changed(model, before: dict[str, torch.Tensor]) -> set[str]:
    return {
        k.split(".")[0]
        for k, v in model.state_dict().items()
        if k in before and not torch.equal(v, before[k])
    }


def test_d_iter_schedule_and_update_order() -> None:
    """Two of three iterations update only D_c; the third updates every network, the encoders
    and decoders twice (two Adam steps) and the attribute encoders once."""
    model = build(d_iter=3)
    model.train()
    for step in (0, 1):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        logs = model.train_step(batch(step), step)
        assert set(logs) == {"d_content"}
        assert _changed(model, before) == {"content_dis"}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logs = model.train_step(batch(2), 2)
    assert {"dis_enc", "dis_rand", "content_dis", "disentangler"} <= _changed(model, before)
    for key in ("cross_cycle", "self_recon", "latent_reg", "mode_seeking", "content_l2", "kl"):
        assert key in logs, key
    steps = {
        name: max(int(s["step"]) for s in opt.state.values())
        for name, opt in model.optimizers().items()
    }
    assert steps == {"gen": 2, "attr": 1, "dis": 1, "content_dis": 3}


def test_second_update_uses_gradients_at_the_first_weights() -> None:
    """Update (b) of the encoders and decoders steps with the gradient of its loss at the weights
    before update (a): both gradients come from one forward pass."""
    model = build()
    model.train()
    expected: list = []
    losses = model._generator_losses

    def record(x, f):
        first, second, logs = losses(x, f)
        grads = torch.autograd.grad(second, model._gen_params, retain_graph=True)
        expected.append([g.clone() for g in grads])
        return first, second, logs

    seen: list = []
    step = model.opt_gen.step

    def spy(*args, **kwargs):
        seen.append([p.grad.clone() for p in model._gen_params])
        return step(*args, **kwargs)

    model._generator_losses = record  # type: ignore[method-assign]
    model.opt_gen.step = spy  # type: ignore[method-assign]
    model.train_step(batch(3), 0)
    assert len(seen) == 2 and len(expected) == 1
    assert any(not torch.equal(a, b) for a, b in zip(seen[0], seen[1], strict=True))
    for got, want in zip(seen[1], expected[0], strict=True):
        assert torch.allclose(got, want, atol=1e-7)


def test_mode_seeking_off_draws_one_random_attribute() -> None:
    model = build(lambda_mode_seeking=0.0)
    model.train()
    logs = model.train_step(batch(4), 0)
    assert "mode_seeking" not in logs and "latent_reg" in logs


# --------------------------------------------------------------------- inference
def test_inference_attribute_is_the_training_mean_or_the_prior() -> None:
    model = build()
    model.train()
    model.train_step(batch(5), 0)
    model.eval()
    batches = [batch(s, b=3) for s in (10, 11)]
    model.prepare_inference(iter(batches))
    with torch.no_grad():
        mus = torch.cat([model.disentangler.attribute(b["b"], "b")[1] for b in batches])
    assert torch.allclose(model.attr_mean_b, mus.mean(0), atol=1e-6)
    assert {"attr_mean_a", "attr_mean_b"} <= set(model.state_dict())
    x = batches[0]["a"]
    with torch.no_grad():
        zc = model.disentangler.content(x, "a", noise=False)
        want = model.disentangler.decode(zc, model.attr_mean_b[None].expand(3, -1), "b")
    assert torch.allclose(model.translate(x, "a_to_b"), want.clamp(-1, 1))
    assert torch.equal(model.content_map(x, "a"), zc)
    model.params["attribute_mode"] = "prior"
    a, b = (seeded(s, model.translate, x, "a_to_b") for s in (0, 1))
    assert not torch.equal(a, b)


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="attribute_mode"):
        build(attribute_mode="target")
    with pytest.raises(ValueError, match="divisible"):
        build(size=30)
    with pytest.raises(ValueError, match="d_iter"):
        build(d_iter=0)
    with pytest.raises(ValueError, match="unknown parameter"):
        build(lambda_cycle=1.0)
