"""Training recipes: the paper config's published recipes resolve on IXI's training split to the
published lengths, the equal budget gives every method the same number of training images,
augmentation moves image and mask together (and only where a recipe asks for it), and the recipe
table reports what the runs' spec.json say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mrbench.config import recipes
from mrbench.config.resolve import ConfigError, method_spec_dict
from mrbench.reporting import recipes_table
from mrbench.training import loop
from mrbench.training.augment import Augment, augmenter
from mrbench.training.sampling import PairDataset
from mrbench.training.settings import resolve_training
from mrbench_methods import get_plugin

ROOT = Path(__file__).resolve().parents[1]
#: IXI in the paper: 60 training subjects, 90 % of them for training, 100 slices each
IXI_TRAIN_SLICES = 54 * 100


def _config(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())


def _resolve(config: dict, method: str, n: int = IXI_TRAIN_SLICES) -> dict:
    cls = get_plugin(config["methods"][method]["plugin"])
    return resolve_training(cls, recipes.method_training(cls, config, method), n)


def test_paper_config_resolves_the_published_recipes_on_ixi() -> None:
    config = _config("config.yaml")
    assert config["recipe"] == "official"
    cyc = _resolve(config, "cyclegan")
    assert (cyc["batch_size"], cyc["epochs"], cyc["steps"]) == (1, 200, 1_080_000)
    assert cyc["lr_schedule"] == "linear" and cyc["lr_decay_start"] * cyc["epochs"] == 100
    assert cyc["augment"] == "resize_crop_flip" and round(cyc["augment_resize"] * 256) == 286
    assert cyc["select"] == "last"
    syn = _resolve(config, "syndiff")
    assert (syn["batch_size"], syn["epochs"], syn["steps"]) == (1, 500, 2_700_000)
    assert syn["augment"] == "none" and syn["ema_decay"] == 0.999
    dis = _resolve(config, "disdiff")
    assert dis["batch_size"] == 4 and dis["lr_schedule"] == "plateau"
    assert dis["val_every"] == 5 * IXI_TRAIN_SLICES // 4  # every 5 epochs
    assert recipes_table.lr_schedule_text(cyc) == "linear decay to 0 from epoch 100"


def test_equal_budget_gives_every_method_the_same_images() -> None:
    config = {**_config("config.yaml"), "recipe": "equal_budget"}
    seen = {}
    for method, entry in config["methods"].items():
        if get_plugin(entry["plugin"]).trainable:
            t = _resolve(config, method)
            seen[method] = (t["batch_size"], t["steps"] * t["batch_size"])
    assert len(seen) >= 6 and len(set(seen.values())) == 1, seen
    assert next(iter(seen.values())) == (4, 100 * (IXI_TRAIN_SLICES // 4) * 4)
    # the method's own choices stay: CycleGAN keeps its augmentation and last-epoch weights
    cyc = _resolve(config, "cyclegan")
    assert cyc["augment"] == "resize_crop_flip" and cyc["select"] == "last"
    # a method entry may not change its own budget under equal_budget
    config["methods"]["cyclegan"] = {"plugin": "cyclegan", "training": {"batch_size": 1}}
    with pytest.raises(ConfigError, match="methods.cyclegan.training: batch_size"):
        method_spec_dict(config, "cyclegan")


def test_a_later_steps_setting_overrides_recipe_epochs() -> None:
    config = {**_config("config.yaml"), "training": {"steps": 50}}
    t = _resolve(config, "cyclegan")
    assert t["epochs"] is None and t["steps"] == 50


def test_plugin_equal_budget_may_not_set_the_budget() -> None:
    class Bad:
        plugin_name = "bad"
        recipes = {"equal_budget": {"batch_size": 2}}

    with pytest.raises(recipes.RecipeError, match="'bad'.*batch_size"):
        recipes.recipe_training(Bad, "equal_budget")


def test_demo_deep_methods_train_on_the_same_number_of_images() -> None:
    config = _config("demo.yaml")
    seen = {}
    for method, entry in config["methods"].items():
        spec = method_spec_dict(config, method)
        if spec["trainable"]:
            t = resolve_training(get_plugin(entry["plugin"]), spec["training"], 10_000)
            seen[method] = t["steps"] * t["batch_size"]
    assert len(seen) >= 7 and len(set(seen.values())) == 1, seen


# ------------------------------------------------------------------ augmentation
def test_augmentation_moves_image_and_mask_together() -> None:
    rng = np.random.default_rng(0)
    mask = (rng.random((32, 32)) > 0.5).astype(np.float32)
    image = mask * 2 - 1  # a binary image equal to its mask in [-1, 1]
    aug = Augment(resize=1.0, seed=3)  # crop offsets are all 0 at this ratio: flips only
    flips = set()
    for k in range(8):
        draw = aug.draw(32, k, 5, "a")
        im, m = aug.apply(image, mask, draw)
        assert np.array_equal(im, m * 2 - 1)
        flips.add(draw[2])
    assert flips == {True, False}
    aug = Augment(resize=286 / 256, seed=3)
    draws = {aug.draw(32, k, 5, "a") for k in range(12)}
    assert len(draws) > 6  # crops differ between epochs
    for draw in draws:
        im, m = aug.apply(image, mask, draw)
        assert im.shape == m.shape == (32, 32)
        same = np.mean((im > 0) == (m > 0.5))
        assert same > 0.9, draw  # one geometry (a shifted crop would agree about half the time)
        assert set(np.unique(m)) <= {0.0, 1.0}  # nearest neighbour keeps the mask binary
    assert aug.draw(32, 4, 5, "a") == aug.draw(32, 4, 5, "a")  # a pure function


def test_augmentation_streams_of_a_and_b_are_those_of_t1_and_t2_before() -> None:
    """Domain a draws from stream 1 and b from stream 2, as t1 and t2 did, so a T1w/T2w run
    augments exactly as before the contract became pair-neutral; paired items share stream 0."""
    aug = Augment(resize=286 / 256, seed=3)
    for domain, stream in (("a", 1), ("b", 2)):
        rng = np.random.default_rng([3, 1729, 4, 5, stream])
        top, left = (int(v) for v in rng.integers(0, 36 - 32 + 1, size=2))
        assert aug.draw(32, 4, 5, domain) == (top, left, bool(rng.random() < 0.5))
    paired = Augment(resize=286 / 256, seed=3, paired=True)
    assert paired.draw(32, 4, 5, "a") == paired.draw(32, 4, 5, "b")


def test_loader_applies_augmentation_only_where_the_recipe_asks(phantom_store: Path) -> None:
    from mrbench.slices import SliceStore

    store = SliceStore(phantom_store / "train")
    config = _config("config.yaml")
    syn = _resolve(config, "syndiff", len(store))
    assert augmenter(syn, 0) is None
    plain = PairDataset(store, augmenter(syn, 0))[(1, 2, 7)]
    for k, v in store.pair(1, 2).items():
        assert torch.equal(plain[k], v)
    cyc = _resolve(config, "cyclegan", len(store))
    ds = PairDataset(store, augmenter(cyc, 0))
    items = [ds[(1, 2, k)] for k in range(6)]
    assert any(not torch.equal(it["a"], store.pair(1, 2)["a"]) for it in items)
    assert all(it.contrasts == ("t1", "t2") for it in items)  # the pair's names are kept
    aug, raw = augmenter(cyc, 0), store.pair(1, 2)
    for k, it in enumerate(items):
        for m, row in (("a", 1), ("b", 2)):
            # one draw per slice, shared by the image and its mask
            image, mask = raw[m].numpy()[0], raw[f"mask_{m}"].numpy()[0]
            want_im, want_mask = aug.apply(image, mask, aug.draw(16, k, row, m))
            assert it[m].shape == (1, 16, 16)
            assert np.allclose(it[m][0].numpy(), want_im)
            assert np.array_equal(it[f"mask_{m}"][0].numpy(), want_mask)


# ------------------------------------------------------------------ the table
def test_recipe_table_rows_agree_with_spec_json(phantom_store: Path, tmp_path: Path) -> None:
    config = _config("test.yaml") | {"recipe": "official"}
    config["training"] = {**config["training"], "val_every_epochs": None}
    specs = []
    for method in ("cyclegan", "intensity_map"):
        spec = method_spec_dict(config, method)
        spec["training"].update(epochs=1, batch_size=2) if spec["trainable"] else None
        loop.train(spec, phantom_store, tmp_path / method, seed=0, log=lambda m: None)
        specs.append(tmp_path / method / "spec.json")
    doc, df = recipes_table.recipe_table(specs)
    md = doc.markdown()
    cyc = json.loads(specs[0].read_text())
    row = df.set_index("method").loc["cyclegan"]
    assert cyc["recipe"] == "official" and cyc["training"]["epochs"] == 1
    assert row.steps == cyc["training"]["steps"] == cyc["train_slices"] // 2
    assert row.images_seen == row.steps * 2 and row.epochs == pytest.approx(
        row.steps * 2 / cyc["train_slices"]
    )
    assert row.selection == "last step" and "crop, flip" in row.augmentation
    assert "One-channel slices" in row.deviations
    line = next(x for x in md.splitlines() if "| CycleGAN |" in x)
    assert f"| {row.steps:,} |" in line and "last step" in line
    assert "linear decay to 0 from epoch 0.5" in line
    assert df.set_index("method").loc["intensity_map"].steps == 0


def test_table1_note_names_the_selection_rule() -> None:
    note = recipes_table.selection_note(_config("config.yaml"))
    assert note.startswith("Exported checkpoint")
    last = note.split("last step: ")[1].split(";")[0]
    best = note.split("best paired-validation PSNR: ")[1]
    assert "cyclegan" in last and "syndiff" not in last
    assert "syndiff" in best and "disdiff_no_dc" in best
    assert "identity" not in note  # untrained methods select nothing


def test_every_plugin_recipe_resolves() -> None:
    """Recipes a plugin declares name known trainer keys and resolve for both recipe names."""
    from mrbench_methods import registry

    for name, cls in registry().items():
        assert set(cls.recipes) <= set(recipes.RECIPES), name
        for recipe in recipes.RECIPES:
            t = resolve_training(cls, recipes.recipe_training(cls, recipe), 1000)
            assert t["steps"] >= 1, (name, recipe)
            if recipe == "equal_budget" and cls.trainable:
                assert t["batch_size"] * t["steps"] == 100 * (1000 // 4) * 4, name
