"""StarGAN-v2: official network sizes at paper size, the solver's update order and weights and the
test-time style (the short run, which learns the phantom's contrast without reading targets:
tests/test_method_runs.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import check_test_time_style, record_steps, unpaired_batch

from mrbench_methods import get_plugin
from mrbench_methods.nets.adain import AdaIN
from mrbench_methods.nets.stargan import Generator, n_down_generator, n_down_trunk


def test_paper_size_parameter_counts_match_the_official_model() -> None:
    # REFERENCES 3b: 2 domains, w_hpf 0, 1 channel, 256 px
    cls = get_plugin("stargan_v2")
    with torch.device("meta"):
        model = cls({}, image_size=256)
    counts = model.num_parameters()
    expected = {"generator": 33.89e6, "mapping_network": 2.44e6, "style_encoder": 20.92e6,
                "discriminator": 20.85e6}  # fmt: skip
    assert set(counts) == set(expected)
    for name, value in expected.items():
        assert counts[name] == pytest.approx(value, rel=0.005), name


def test_block_counts_follow_the_image_size_rule() -> None:
    assert [n_down_generator(s) for s in (16, 32, 64, 256)] == [0, 1, 2, 4]
    assert [n_down_trunk(s) for s in (16, 32, 256)] == [2, 3, 6]
    for size in (16, 32):
        g = Generator(size, 1, 8, 32, 16)
        assert len(g.encode) == n_down_generator(size) + 2
        assert g(torch.zeros(2, 1, size, size), torch.zeros(2, 16)).shape == (2, 1, size, size)
    with pytest.raises(ValueError, match="power of 2"):
        get_plugin("stargan_v2")(get_plugin("stargan_v2").tiny_params, image_size=48)


def test_adain_with_zero_style_layer_is_instance_norm() -> None:
    layer = AdaIN(4, 3)
    torch.nn.init.zeros_(layer.fc.weight)
    torch.nn.init.zeros_(layer.fc.bias)
    x = torch.randn(2, 3, 8, 8) * 5 + 2
    out = layer(x, torch.randn(2, 4))
    torch.testing.assert_close(out, torch.nn.functional.instance_norm(x))


def test_published_recipe_in_defaults_and_optimisers() -> None:
    cls = get_plugin("stargan_v2")
    d = cls.defaults
    assert (d["dim"], d["max_dim"], d["style_dim"], d["latent_dim"]) == (64, 512, 64, 16)
    assert (d["lambda_reg"], d["lambda_sty"], d["lambda_ds"], d["lambda_cyc"]) == (1, 1, 2, 1)
    assert d["ds_iter"] == 100000 and d["target"] == "random"
    assert cls.training_defaults == {"batch_size": 8, "ema_decay": 0.999, "lr_schedule": "constant"}
    model = cls(cls.tiny_params, image_size=32)
    opts = model.optimizers()
    lrs = {k: o.param_groups[0]["lr"] for k, o in opts.items()}
    assert lrs == {"generator": 1e-4, "mapping": 1e-6, "style": 1e-4, "discriminator": 1e-4}
    for opt in opts.values():
        assert opt.param_groups[0]["betas"] == (0.0, 0.99)
        assert opt.param_groups[0]["weight_decay"] == 1e-4
    assert set(model.ema_modules()) == {"generator", "mapping_network", "style_encoder"}
    assert model.style_mean.shape == (2, cls.tiny_params["style_dim"])


def test_diversity_weight_decays_linearly_to_zero() -> None:
    cls = get_plugin("stargan_v2")
    model = cls({**cls.tiny_params, "lambda_ds": 2.0, "ds_iter": 100}, image_size=32)
    assert [model.lambda_ds_at(s) for s in (0, 25, 50, 100, 500)] == [2.0, 1.5, 1.0, 0.0, 0.0]
    assert model.train_step(unpaired_batch(4), 50)["lambda_ds"] == 1.0


def test_update_order_is_the_official_solvers() -> None:
    """D latent, D reference, then G+F+E (latent), then G alone (reference)."""
    cls = get_plugin("stargan_v2")
    torch.manual_seed(0)
    model = cls(cls.tiny_params, image_size=32)
    calls = record_steps(model.optimizers())
    losses = model.train_step(unpaired_batch(4), 0)
    assert calls == ["discriminator", "discriminator", "generator", "mapping", "style", "generator"]
    for tag in ("D_latent", "D_ref"):
        assert losses[f"{tag}_reg"] > 0  # R1 on real images
    for tag in ("G_latent", "G_ref"):
        assert {f"{tag}_{k}" for k in ("adv", "sty", "ds", "cyc")} <= set(losses)


def test_sources_references_and_targets() -> None:
    cls = get_plugin("stargan_v2")
    model = cls({**cls.tiny_params, "target": "other"}, image_size=32)
    batch = unpaired_batch(4)
    torch.manual_seed(1)
    inp = model._inputs(batch)
    assert inp["y_org"].tolist() == [0, 0, 1, 1]  # half of each modality as sources
    assert torch.equal(inp["x_real"][:2], batch["a"][:2])
    assert inp["y_trg"].tolist() == [1, 1, 0, 0]
    pools = [batch["a"], batch["b"]]
    for i in range(4):  # references: two different images of the target domain
        pool = pools[int(inp["y_trg"][i])]
        k1 = [j for j in range(4) if torch.equal(pool[j], inp["x_ref"][i])]
        k2 = [j for j in range(4) if torch.equal(pool[j], inp["x_ref2"][i])]
        assert k1 and k2 and k1 != k2


def test_mean_style_comes_from_training_slices_and_prior_is_an_option() -> None:
    def codes(model, slices):  # E(x, y) of each modality's slices
        for d, m in enumerate(("a", "b")):
            x = torch.cat([b[m] for b in slices])
            yield model.style_encoder(x, torch.full((len(x),), d, dtype=torch.long))

    cls = check_test_time_style("stargan_v2", 4, codes)
    with pytest.raises(ValueError, match="style_mode"):
        cls({**cls.tiny_params, "style_mode": "target"}, image_size=32)
