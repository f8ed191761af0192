"""StarGAN-v2: official network sizes at paper size, the solver's update order and weights, the
test-time style, and a short run that learns the phantom's contrast without reading targets."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from mrbench.checkpoint import load_model
from mrbench.inference.translate import translate_store
from mrbench.slices import SliceStore
from mrbench.training import loop as trainer
from mrbench_methods import get_plugin
from mrbench_methods.nets.adain import AdaIN
from mrbench_methods.nets.stargan import Generator, n_down_generator, n_down_trunk

#: 16 px phantom run (tests/conftest.py): small widths, official losses and update order
RUN_PARAMS = {"dim": 8, "max_dim": 32, "style_dim": 16, "latent_dim": 8, "mapping_hidden": 32,
              "ds_iter": 50, "lr": 1e-3, "f_lr": 1e-5}  # fmt: skip


def _batch(b: int = 4, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t1 = torch.rand(b, 1, size, size, generator=g) * 2 - 1
    return {"t1": t1, "t2": -t1.flip(0)}


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
    assert model.train_step(_batch(), 50)["lambda_ds"] == 1.0


def test_update_order_is_the_official_solvers() -> None:
    """D latent, D reference, then G+F+E (latent), then G alone (reference)."""
    cls = get_plugin("stargan_v2")
    torch.manual_seed(0)
    model = cls(cls.tiny_params, image_size=32)
    calls: list[str] = []
    for name, opt in model.optimizers().items():
        step = opt.step

        def recorder(*a, _name=name, _step=step, **k):
            calls.append(_name)
            return _step(*a, **k)

        opt.step = recorder
    losses = model.train_step(_batch(), 0)
    assert calls == ["discriminator", "discriminator", "generator", "mapping", "style", "generator"]
    for tag in ("D_latent", "D_ref"):
        assert losses[f"{tag}_reg"] > 0  # R1 on real images
    for tag in ("G_latent", "G_ref"):
        assert {f"{tag}_{k}" for k in ("adv", "sty", "ds", "cyc")} <= set(losses)


def test_sources_references_and_targets() -> None:
    cls = get_plugin("stargan_v2")
    model = cls({**cls.tiny_params, "target": "other"}, image_size=32)
    batch = _batch(b=4)
    torch.manual_seed(1)
    inp = model._inputs(batch)
    assert inp["y_org"].tolist() == [0, 0, 1, 1]  # half of each modality as sources
    assert torch.equal(inp["x_real"][:2], batch["t1"][:2])
    assert inp["y_trg"].tolist() == [1, 1, 0, 0]
    pools = [batch["t1"], batch["t2"]]
    for i in range(4):  # references: two different images of the target domain
        pool = pools[int(inp["y_trg"][i])]
        k1 = [j for j in range(4) if torch.equal(pool[j], inp["x_ref"][i])]
        k2 = [j for j in range(4) if torch.equal(pool[j], inp["x_ref2"][i])]
        assert k1 and k2 and k1 != k2


def test_mean_style_comes_from_training_slices_and_prior_is_an_option() -> None:
    cls = get_plugin("stargan_v2")
    torch.manual_seed(0)
    model = cls(cls.tiny_params, image_size=32)
    model.train_step(_batch(), 0)
    slices = [_batch(seed=s) for s in range(3)]
    model.prepare_inference(iter(slices))
    model.eval()
    with torch.no_grad():
        for d, m in enumerate(("t1", "t2")):
            x = torch.cat([b[m] for b in slices])
            codes = model.style_encoder(x, torch.full((len(x),), d, dtype=torch.long))
            torch.testing.assert_close(model.style_mean[d], codes.mean(0))
    x = _batch(seed=9)["t1"]
    torch.testing.assert_close(model.translate(x, "t1_to_t2"), model.translate(x, "t1_to_t2"))
    prior = cls({**cls.tiny_params, "style_mode": "prior"}, image_size=32)
    prior.load_state_dict(model.state_dict())
    prior.eval()
    assert not torch.equal(prior.translate(x, "t1_to_t2"), prior.translate(x, "t1_to_t2"))
    with pytest.raises(ValueError, match="style_mode"):
        cls({**cls.tiny_params, "style_mode": "target"}, image_size=32)


@pytest.fixture(scope="module")
def trained(phantom_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = {
        "method": "stargan_v2",
        "plugin": "stargan_v2",
        "params": RUN_PARAMS,
        # no EMA: a 0.99 average over 120 steps still leans on the initial weights
        "training": {
            "steps": 120,
            "batch_size": 4,
            "val_every": 40,
            "checkpoint_every": 120,
            "ema_decay": None,
        },
    }
    out = tmp_path_factory.mktemp("stargan_v2") / "run"
    return trainer.train(spec, phantom_store, out, seed=0, log=lambda m: None)


def test_short_run_beats_identity(phantom_store: Path, trained: Path) -> None:
    """Beats the identity floor by 2 dB, and learns structure, not a flat grey image: an
    untrained model can score near identity's PSNR or above it with a grey output, but with almost
    no SSIM, so the trained one must also gain clearly in SSIM over its untrained start."""
    val = SliceStore(phantom_store / "val")
    rows = trainer.validation_rows(val, 64)
    cpu = torch.device("cpu")
    floor = trainer.validate(get_plugin("identity")({}, image_size=val.size), val, rows, 8, cpu)
    torch.manual_seed(0)
    start_model = get_plugin("stargan_v2")(RUN_PARAMS, image_size=val.size)
    start = trainer.validate(start_model, val, rows, 8, cpu)
    scores = trainer.validate(load_model(trained), val, rows, 8, cpu)
    assert scores["psnr"] > floor["psnr"] + 2.0, (scores, floor)
    assert scores["ssim"] > start["ssim"] + 0.05, (scores, start)


def test_translation_never_reads_the_target(phantom_store: Path, trained: Path, tmp_path) -> None:
    """Translating a split gives the same volumes when its target images are garbage."""
    rng = np.random.default_rng(0)
    for direction in ("t1_to_t2", "t2_to_t1"):
        dst = direction.split("_to_")[1]
        spoiled = tmp_path / f"spoiled_{direction}"
        shutil.copytree(phantom_store / "test", spoiled)
        arr = np.load(spoiled / f"{dst}.npy")
        np.save(spoiled / f"{dst}.npy", rng.random(arr.shape).astype(arr.dtype))
        a = translate_store(trained, phantom_store / "test", direction, tmp_path / "a" / direction,
                            device="cpu")  # fmt: skip
        b = translate_store(trained, spoiled, direction, tmp_path / "b" / direction, device="cpu")
        assert a["n_slices"] == b["n_slices"] > 0
        for f in sorted((tmp_path / "a" / direction).glob("*.nii.gz")):
            va = np.asarray(nib.load(f).dataobj)
            vb = np.asarray(nib.load(tmp_path / "b" / direction / f.name).dataobj)
            assert va.any()
            np.testing.assert_array_equal(va, vb)
