"""The trainer on any contrast pair: ``--pair``, the pair in model files, validation logged under
contrast directions, resume on another pair, and model files and checkpoints written before the
method contract became pair-neutral (t1/t2 names) still load."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import cyclegan_spec, mrbench_cli, tiny_training, train_cli_args, write_pair_store

from mrbench.checkpoint import load_model, model_record, read_model, save_model
from mrbench.io import InputError
from mrbench.training import loop
from mrbench.training.checkpoints import _upgrade_legacy
from mrbench.training.runs import data_digest
from mrbench_methods import get_plugin
from mrbench_methods.base import upgrade_legacy_name, upgrade_legacy_names

SPEC = cyclegan_spec("cyclegan_tiny", tiny_training(4, 2))


@pytest.fixture(scope="module")
def pair_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ and val/ splits holding T1w, T2w and FLAIR (16 px)."""
    base = tmp_path_factory.mktemp("pairdata")
    for split, seed in (("train", 0), ("val", 1)):
        write_pair_store(base / split, ("t1", "t2", "flair"), n=8, size=16, seed=seed)
    return base


def _val_columns(out: Path) -> list[str]:
    with (out / "val_log.csv").open() as f:
        return next(csv.reader(f))


def test_a_run_on_t2_flair_records_its_pair_and_logs_contrast_directions(
    pair_data: Path, tmp_path: Path
) -> None:
    messages: list[str] = []
    out = tmp_path / "run"
    loop.train(SPEC, pair_data, out, 0, "cpu", pair=("t2", "flair"), log=messages.append)
    record = read_model(out / "model.pt")
    assert record["meta"]["pair"] == ["t2", "flair"]
    assert json.loads((out / "spec.json").read_text())["pair"] == ["t2", "flair"]
    cols = _val_columns(out)
    assert {"psnr_t2_to_flair", "psnr_flair_to_t2", "ssim_t2_to_flair", "psnr", "ssim"} <= set(cols)
    assert not any("t1_to_t2" in c or "a_to_b" in c for c in cols)
    assert any("on T2w/FLAIR" in m for m in messages), messages
    model = load_model(out / "model.pt")
    assert model.model_info["meta"]["pair"] == ["t2", "flair"]


def test_the_default_pair_logs_as_before(pair_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    loop.train(SPEC, pair_data, out, 0, "cpu", log=lambda m: None)
    assert read_model(out / "model.pt")["meta"]["pair"] == ["t1", "t2"]
    assert {"psnr_t1_to_t2", "psnr_t2_to_t1", "psnr"} <= set(_val_columns(out))


def test_the_data_digest_covers_the_pair(pair_data: Path) -> None:
    default = data_digest(pair_data)
    assert default == data_digest(pair_data, ("t1", "t2"))
    assert len({default, data_digest(pair_data, ("t2", "flair")),
                data_digest(pair_data, ("flair", "t2"))}) == 3  # fmt: skip


def test_a_resume_on_another_pair_refuses_or_restarts(pair_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    spec = cyclegan_spec("cyclegan_tiny", tiny_training(4, 2))
    loop.train(spec, pair_data, out, 0, "cpu", max_steps=2, log=lambda m: None)
    with pytest.raises(InputError, match=r"pair.*differ"):
        loop.train(spec, pair_data, out, 0, "cpu", pair=("t2", "flair"), log=lambda m: None)
    messages: list[str] = []
    loop.train(spec, pair_data, out, 0, "cpu", pair=("t2", "flair"), restart_on_change=True,
               log=messages.append)  # fmt: skip
    assert any("starting afresh" in m for m in messages), messages
    assert read_model(out / "model.pt")["meta"]["pair"] == ["t2", "flair"]


def test_a_pair_the_store_lacks_or_a_bad_pair_is_one_line(pair_data: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="holds t1, t2, flair, not pd"):
        loop.train(SPEC, pair_data, tmp_path / "a", 0, "cpu", pair=("t2", "pd"))
    res = mrbench_cli(*train_cli_args(pair_data, tmp_path / "b", SPEC, "--pair", "t2", "t2"))
    assert res.returncode == 1
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "--pair" in err[0] and "two different contrasts" in err[0], err


def test_loader_workers_keep_the_pair_of_a_batch(pair_data: Path) -> None:
    """Through DataLoader workers, augmentation, collation and the device, a batch stays a
    Batch naming its pair."""
    from torch.utils.data import DataLoader

    from mrbench.pairs import Batch
    from mrbench.slices import SliceStore
    from mrbench.training.augment import Augment
    from mrbench.training.sampling import PairDataset, collate, to_device

    store = SliceStore(pair_data / "train", pair=("flair", "t2"))
    ds = PairDataset(store, Augment(286 / 256, 0))
    loader = DataLoader(ds, batch_sampler=[[(0, 1, 0), (2, 3, 0)]], num_workers=1,
                        collate_fn=collate)  # fmt: skip
    batch = to_device(next(iter(loader)), torch.device("cpu"))
    assert isinstance(batch, Batch) and batch.contrasts == ("flair", "t2")
    assert batch["a"].shape == (2, 1, 16, 16) and set(batch) == {"a", "b", "mask_a", "mask_b"}


# ------------------------------------------------------------------ files of the old contract
def test_legacy_names_map_t1_to_a_and_t2_to_b() -> None:
    assert upgrade_legacy_name("G_t1_to_t2.model.0.weight") == "G_a_to_b.model.0.weight"
    assert upgrade_legacy_name("disentangler.enc_content.t2.net.0.weight") == (
        "disentangler.enc_content.b.net.0.weight"
    )
    assert upgrade_legacy_name("attr_mean_t1") == "attr_mean_a"
    assert upgrade_legacy_name("lut_t2_to_t1") == "lut_b_to_a"
    # tokens that merely contain t1/t2 are not names of the old contract
    assert upgrade_legacy_name("conv_t10.weight") == "conv_t10.weight"
    assert upgrade_legacy_name("blocks.t2x.bias") == "blocks.t2x.bias"


def _old_names(state: dict) -> dict:
    """``state`` as a model of the old contract named it (a -> t1, b -> t2)."""
    import re

    token = re.compile(r"(^|[._])([ab])(?=$|[._])")
    return {token.sub(lambda m: m.group(1) + ("t1" if m.group(2) == "a" else "t2"), k): v
            for k, v in state.items()}  # fmt: skip


@pytest.mark.parametrize("plugin", ["cyclegan", "drit", "unit_ddpm", "intensity_map"])
def test_a_model_file_of_the_old_contract_loads_with_its_weights(
    plugin: str, tmp_path: Path
) -> None:
    cls = get_plugin(plugin)
    torch.manual_seed(0)
    model = cls(dict(cls.tiny_params), image_size=32)
    state = model.state_dict()
    old = _old_names(state)
    assert set(old) != set(state) and any("t1" in k for k in old)  # really the old names
    assert upgrade_legacy_names(old).keys() == state.keys()
    record = model_record(
        method=plugin, plugin=plugin, params=model.params, image_size=32, state=old,
        meta={"inputs": {}},
    )  # fmt: skip
    path = save_model(record, tmp_path / "model.pt")
    loaded = load_model(path)
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # a model of the new contract with old names is not silently renamed
    record["meta"]["pair"] = ["t1", "t2"]
    save_model(record, path)
    with pytest.raises(InputError, match="weights do not fit"):
        load_model(path)


def test_a_checkpoint_of_the_old_contract_is_renamed_for_resuming() -> None:
    cls = get_plugin("cyclegan")
    model = cls(dict(cls.tiny_params), image_size=32)
    full = model.full_state()
    old = {
        "spec": {"method": "m", "plugin": "cyclegan"},
        "method": {
            "model": _old_names(full["model"]),
            "optimizers": full["optimizers"],
            "extra": _old_names(full["extra"]),
        },
        "ema": {},
    }
    new = _upgrade_legacy(old)
    assert new["method"]["model"].keys() == full["model"].keys()
    assert {"pool_t1", "pool_t2"} <= set(old["method"]["extra"])
    assert set(new["method"]["extra"]) == set(full["extra"])
    model.load_full_state(new["method"])  # loads without a key error
    recent = {**old, "spec": {**old["spec"], "pair": ["t1", "t2"]}}
    assert _upgrade_legacy(recent) is recent  # a checkpoint with a pair is left alone
