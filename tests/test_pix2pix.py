"""pix2pix: its networks against the reference implementation, its losses, its test mode, and the
paired sampling the ``paired`` trait gives it (and no other method).

``fixtures/pix2pix_official.pt`` holds what the reference implementation's own ``UnetGenerator``
(``unet_256``, ngf 8, batch norm, dropout) and ``NLayerDiscriminator`` (ndf 8, 3 layers, batch
norm, 2 input channels) computed once on a seeded 256 px input, with every parameter filled from
a seeded generator in the reference's parameter order: their parameter names and shapes, the
generator's output in training mode (batch statistics, dropout from seed 7) and then in eval
mode (the running statistics that one training-mode pass left), subsampled every 4 pixels with
the full sums, and the discriminator's outputs on (input, output).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import brain_batch

from mrbench.slices import SliceStore
from mrbench.training.augment import augmenter
from mrbench.training.sampling import BatchIndices, PairDataset, PairSampler, collate
from mrbench.training.settings import resolve_training
from mrbench_methods import get_plugin, registry
from mrbench_methods.nets.patchgan import PatchDiscriminator
from mrbench_methods.nets.unet import UnetGenerator

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "pix2pix_official.pt"


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _fill(net: torch.nn.Module, seed: int) -> None:
    """The fixture's weights: N(0, 0.1) in parameter order, norm scales around 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            scale = 1.0 if name.endswith("weight") and p.dim() == 1 else 0.0
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1 + scale)


def test_paper_size_parameter_counts_equal_the_official_ones() -> None:
    cls = get_plugin("pix2pix")
    with torch.device("meta"):
        model = cls({}, image_size=256)
        rgb = UnetGenerator(3, 3, 8, 64), PatchDiscriminator(6, 64, 3, norm="batch")
    counts = model.num_parameters()
    assert counts["G_a_to_b"] == counts["G_b_to_a"] == 54_407_809
    assert counts["D_b"] == counts["D_a"] == 2_764_609
    assert [_count(net) for net in rgb] == [54_413_955, 2_768_705]  # the official RGB counts


def test_networks_equal_the_official_ones_with_copied_weights() -> None:
    fx = torch.load(FIXTURE, weights_only=True)
    seed_w, seed_x, seed_drop = (int(v) for v in fx["seeds"])
    g, d = UnetGenerator(1, 1, 8, 8, 0.5), PatchDiscriminator(2, 8, 3, norm="batch")
    assert [k for k, _ in g.named_parameters()] == fx["g_keys"]
    assert [list(p.shape) for _, p in g.named_parameters()] == fx["g_shapes"]
    assert [k for k, _ in g.named_buffers()] == fx["g_buffers"]
    assert [k for k, _ in d.named_parameters()] == fx["d_keys"]
    assert [list(p.shape) for _, p in d.named_parameters()] == fx["d_shapes"]
    assert _count(g) == int(fx["g_params"]) and _count(d) == int(fx["d_params"])
    _fill(g, seed_w)
    _fill(d, seed_w + 1)
    x = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(seed_x)).tanh()
    with torch.no_grad():
        g.train(), d.train()
        torch.manual_seed(seed_drop)
        out_train = g(x)
        d_train = d(torch.cat([x, out_train], 1))
        g.eval(), d.eval()
        out_eval = g(x)
        d_eval = d(torch.cat([x, out_eval], 1))
    tol = {"atol": 1e-5, "rtol": 1e-4}
    torch.testing.assert_close(out_train[..., ::4, ::4], fx["g_train_sub"], **tol)
    torch.testing.assert_close(out_eval[..., ::4, ::4], fx["g_eval_sub"], **tol)
    assert float(out_train.double().sum()) == pytest.approx(float(fx["g_train_sum"]), abs=1e-2)
    assert float(out_eval.double().sum()) == pytest.approx(float(fx["g_eval_sum"]), abs=1e-2)
    torch.testing.assert_close(d_train, fx["d_train"], **tol)
    torch.testing.assert_close(d_eval, fx["d_eval"], **tol)


def test_generator_layout_dropout_and_size_checks() -> None:
    g = UnetGenerator(1, 1, 8, 64)
    drops = [m for m in g.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(drops) == 3 and all(m.p == 0.5 for m in drops)
    assert not any(isinstance(m, torch.nn.Dropout) for m in UnetGenerator(1, 1, 5, 8).modules())
    biased = [n for n, p in g.named_parameters() if n.endswith("bias")]
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    assert len(biased) == norms + 1  # batch-norm shifts and the outermost up-convolution
    cls = get_plugin("pix2pix")
    with pytest.raises(ValueError, match="multiple of 2\\*\\*num_downs = 256"):
        cls({}, image_size=128)
    with pytest.raises(ValueError, match="num_downs: must be >= 2"):
        cls({"num_downs": 1}, image_size=32)
    assert UnetGenerator(1, 1, 4, 8)(torch.zeros(2, 1, 16, 16)).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="test_mode"):
        cls.check_params({"num_downs": 5, "test_mode": "random"}, 32)


def test_train_step_gan_plus_l1_updates_both_directions() -> None:
    cls = get_plugin("pix2pix")
    torch.manual_seed(0)
    model = cls(dict(cls.tiny_params), image_size=32)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = model.train_step(brain_batch(1, 2, 32), 0)
    assert set(losses) == {
        *("G_a_to_b_gan", "G_a_to_b_l1", "D_b"),
        *("G_b_to_a_gan", "G_b_to_a_l1", "D_a"),
    }
    # an untrained discriminator scores near 0: BCE near log 2 for D (halved sum) and G
    assert losses["D_b"] == pytest.approx(np.log(2), abs=0.3)
    assert losses["G_a_to_b_gan"] == pytest.approx(np.log(2), abs=0.3)
    for net in ("G_a_to_b", "G_b_to_a", "D_a", "D_b"):
        changed = [k for k, v in model.state_dict().items() if k.startswith(net)]
        assert any(not torch.equal(model.state_dict()[k], before[k]) for k in changed), net
    assert set(model.optimizers()) == {"G_a_to_b", "D_b", "G_b_to_a", "D_a"}
    opt = model.optimizers()["G_a_to_b"]
    assert opt.defaults["lr"] == 2e-4 and opt.defaults["betas"] == (0.5, 0.999)


def test_test_mode_train_is_per_slice_and_leaves_state_alone() -> None:
    cls = get_plugin("pix2pix")
    torch.manual_seed(0)
    model = cls(dict(cls.tiny_params), image_size=32)
    model.train_step(brain_batch(1, 4, 32), 0)
    model.eval()
    x = brain_batch(2, 3, 32)["a"]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    out = model.translate(x, "a_to_b")
    # each slice alone: the same output for a slice in any batch, on every call
    torch.testing.assert_close(model.translate(x[1:2], "a_to_b"), out[1:2])
    torch.testing.assert_close(model.translate(x.flip(0), "a_to_b"), out.flip(0))
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng) and not model.training
    evaluated = cls({**cls.tiny_params, "test_mode": "eval"}, image_size=32)
    evaluated.load_state_dict(model.state_dict())
    assert not torch.allclose(evaluated.translate(x, "a_to_b"), out)


def test_only_paired_methods_get_paired_sampling() -> None:
    paired = {
        n for n, cls in registry().items() if resolve_training(cls, {})["pairing"] == "paired"
    }
    assert {"pix2pix", "intensity_map"} <= paired
    assert paired == {n for n, cls in registry().items() if cls.paired}
    for name in ("cyclegan", "disdiff", "syndiff", "identity"):
        assert resolve_training(get_plugin(name), {})["pairing"] == "unpaired"


def _first_batch(store: Path, pairing: str, augment: str) -> tuple[dict, list]:
    training = {"pairing": pairing, "augment": augment, "augment_resize": 1.25}
    sampler = PairSampler(len(SliceStore(store / "train")), 4, pairing == "paired", 3)
    data = PairDataset(SliceStore(store / "train"), augmenter(training, 3))
    keys = next(iter(BatchIndices(sampler, 0)))
    return collate([data[k] for k in keys]), keys


@pytest.mark.parametrize("augment", ["none", "resize_crop_flip"])
def test_paired_batches_are_voxel_aligned_and_unpaired_ones_are_not(
    phantom_store: Path, augment: str
) -> None:
    store = SliceStore(phantom_store / "train")
    batch, keys = _first_batch(phantom_store, "paired", augment)
    assert all(i == j for i, j, _ in keys)
    # one slice position for both images: the same brain mask, crop and flip
    assert torch.equal(batch["mask_a"], batch["mask_b"])
    if augment == "none":
        for b, (i, _, _) in enumerate(keys):
            assert torch.equal(batch["a"][b], store[i]["a"])
            assert torch.equal(batch["b"][b], store[i]["b"])
    unpaired, ukeys = _first_batch(phantom_store, "unpaired", augment)
    assert any(i != j for i, j, _ in ukeys)
    assert not torch.equal(unpaired["mask_a"], unpaired["mask_b"])


# ------------------------------------------------------------------ tables
#: validation-free synthetic results: the supervised references score highest
SCORES = {
    "identity": 11.0,
    "cyclegan": 20.0,
    "disdiff": 24.0,
    "intensity_map": 27.0,
    "pix2pix": 30.0,
}


def _roster(**evaluation: object):
    from mrbench.config.roster import roster_of

    methods = {n: {"plugin": n} for n in SCORES}
    methods["disdiff"]["paper_row"] = "DisDiff"
    return roster_of({"methods": methods, "evaluation": evaluation})


def _tidy() -> pd.DataFrame:
    from conftest import tidy_row

    rng = np.random.default_rng(0)
    rows = []
    for m, base in SCORES.items():
        for r in ("t1_to_t2", "t2_to_t1"):
            for s in range(6):
                psnr = base + 0.3 * s + rng.normal(0, 0.1)
                for metric, v in (("psnr", psnr), ("ssim", 40 + psnr)):
                    row = tidy_row(dataset="phantom", method=m, label=m, seed=0, direction=r)
                    rows.append(
                        row | {"subject": f"s{s}", "slice": 0, "metric": metric, "value": v}
                    )
    return pd.DataFrame(rows)


def test_roster_marks_supervised_methods_and_keeps_them_off_the_paper_and_reference() -> None:
    roster = _roster()
    assert roster.supervised(roster.order) == ["intensity_map", "pix2pix"]
    assert roster.reference == "disdiff"  # the last unsupervised row, not pix2pix
    assert "pix2pix" not in roster.paper_rows().values()
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    assert "paper_row" not in demo["methods"]["pix2pix"]
    assert "pix2pix" in yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["methods"]


def test_table1_puts_supervised_methods_in_an_unranked_block() -> None:
    from mrbench.evaluation import stats
    from mrbench.reporting.benchmark_tables import SUPERVISED_TITLE, table1

    doc, df = table1(stats.summarise(_tidy()), roster=_roster())
    names = [r[0].text for r in doc.rows]
    assert names[:3] == ["Identity (source image)", "CycleGAN", "DisDiff"]
    assert names[3] == SUPERVISED_TITLE and names[4:] == ["Intensity map", "pix2pix"]
    assert doc.sections == [3]
    # bold: DisDiff, the best unsupervised method, although both supervised rows score higher
    assert all(c.bold for c in doc.rows[2][1:]) and not any(c.bold for r in doc.rows[3:] for c in r)
    sup = df[df["supervised"]]
    assert set(sup["method"]) == {"intensity_map", "pix2pix"} and not sup["psnr_best"].any()
    assert df[df["method"] == "disdiff"]["psnr_best"].all()
    assert any("Supervised reference: Intensity map, pix2pix" in n for n in doc.notes)
    assert SUPERVISED_TITLE in doc.markdown() and "\\midrule" in doc.latex()


@pytest.mark.parametrize("include", [False, True])
def test_significance_leaves_supervised_methods_out_unless_asked(
    tmp_path: Path, include: bool
) -> None:
    from mrbench.cli import main

    tidy = tmp_path / "tidy.csv"
    _tidy().to_csv(tidy, index=False)
    roster = _roster(test_supervised=include).write(tmp_path / "methods.json")
    out = tmp_path / "sig"
    main(
        ["report", "significance", "--tidy", str(tidy), "--roster", str(roster), "--out", str(out)]
    )
    tested = set(pd.read_csv(f"{out}.csv")["method"])
    assert {"identity", "cyclegan"} <= tested and "disdiff" not in tested
    assert ({"pix2pix", "intensity_map"} <= tested) is include
    assert not ({"pix2pix", "intensity_map"} & tested) or include
    note = "Not tested: the supervised reference(s) Intensity map, pix2pix"
    assert (note in Path(f"{out}.md").read_text()) is not include


def test_methods_table_shows_the_paired_trait() -> None:
    from mrbench.reporting.methods_table import methods_table

    doc, df = methods_table(_roster())
    assert dict(zip(df["method"], df["paired"], strict=True)) == {
        "identity": False, "cyclegan": False, "disdiff": False,
        "intensity_map": True, "pix2pix": True,
    }  # fmt: skip
    col = doc.column_titles().index("Paired")
    assert [r[col].text for r in doc.rows if r[1].text == "pix2pix"] == ["✓"]


@pytest.mark.parametrize(
    ("plugin", "params", "paired"),
    [
        ("pix2pix", {"ngf": 4, "ndf": 4, "num_downs": 4, "n_layers_d": 1}, True),
        ("cyclegan", {"ngf": 4, "ndf": 4, "n_blocks": 1, "n_layers_d": 1, "pool_size": 2}, False),
    ],
)
def test_trainer_batches_pairs_for_paired_methods_only(
    phantom_store: Path, tmp_path: Path, plugin: str, params: dict, paired: bool
) -> None:
    from mrbench.training import loop, runs

    training = {"steps": 3, "batch_size": 4, "augment": "resize_crop_flip"}
    spec = {"method": plugin, "plugin": plugin, "params": params, "training": training}
    run = runs.prepare_run(spec, phantom_store, tmp_path / plugin, seed=2, log=lambda m: None)
    assert run.paired is paired and run.resolved["training"]["pairing"] == (
        "paired" if paired else "unpaired"
    )
    sampler = PairSampler(len(run.train_store), 4, run.paired, run.seed)
    batches = loop._batches(run, sampler, 0)
    for _ in range(3):
        batch = next(batches)
        # paired: one slice position, one crop and flip for both images (same brain mask)
        assert torch.equal(batch["mask_a"], batch["mask_b"]) is paired


def test_protocol_ranks_leave_supervised_methods_out() -> None:
    from mrbench.evaluation import stats
    from mrbench.reporting.protocol_ranks import protocol_rankings

    ranks, _ = protocol_rankings(stats.summarise(_tidy()), ["psnr"], roster=_roster())
    assert set(ranks["method"]) == {"identity", "cyclegan", "disdiff"}
    assert sorted(ranks.groupby("protocol")["rank"].max()) == [3.0] * ranks["protocol"].nunique()
