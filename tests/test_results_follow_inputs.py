"""Results follow their inputs: a run records a digest of the data and spec it trained on, a
resume on other data starts afresh, a changed split retrains every model of the workflow, a bad
split stops the workflow even where results exist, and nothing exports weights that were not
trained or not selected."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import copy_workflow, cyclegan_spec, load_config, snakemake, tiny_training

from mrbench.checkpoint import load_checkpoint, read_model
from mrbench.errors import ConfigError, InputError, TrainingError
from mrbench.training.loop import train
from mrbench.training.runs import data_digest

SPEC = cyclegan_spec("cyc", tiny_training(4, 2), n_layers_d=1, pool_size=2)


def _train(store: Path, out: Path, spec: dict = SPEC, **kw) -> tuple[Path, list[str]]:
    said: list[str] = []
    return train(spec, store, out, seed=0, log=said.append, **kw), said


def _other_store(store: Path, tmp_path: Path) -> Path:
    """A slice store of the same image size whose training split holds other subjects (the
    phantom store's test split)."""
    other = tmp_path / "other"
    shutil.copytree(store, other)
    shutil.rmtree(other / "train")
    shutil.copytree(store / "test", other / "train")
    return other


def test_model_and_checkpoint_record_the_digest_of_their_data(
    phantom_store: Path, tmp_path: Path
) -> None:
    model, _ = _train(phantom_store, tmp_path / "run")
    digest = data_digest(phantom_store)
    assert len(digest) == 64 and digest != data_digest(_other_store(phantom_store, tmp_path))
    assert read_model(model)["meta"]["inputs"]["data"] == digest
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ck["inputs"]["data"] == digest and len(ck["inputs"]["spec"]) == 64


def test_resume_on_other_data_of_the_same_size_stops_or_starts_afresh(
    phantom_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    first, _ = _train(phantom_store, out)
    old = read_model(first)["state"]
    other = _other_store(phantom_store, tmp_path)
    with pytest.raises(InputError, match=r"last\.pt: trained on other data .*--restart-on-change"):
        _train(other, out)
    assert first.exists()  # a run folder by hand is never replaced unasked
    again, said = _train(other, out, restart_on_change=True)
    assert not any("resuming from" in m for m in said), said
    assert any("starting afresh" in m and "last.pt" in m for m in said), said
    record = read_model(again)
    assert record["meta"]["inputs"]["data"] == data_digest(other)
    assert load_checkpoint(out / "checkpoints" / "last.pt")["inputs"]["data"] == data_digest(other)
    assert any(not torch.equal(record["state"][k], old[k]) for k in old)
    # the same data again: an honest resume at the last step
    _, said = _train(other, out)
    assert any("resuming from" in m for m in said), said


def test_workflow_job_restarts_on_a_changed_spec(phantom_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _train(phantom_store, out)
    spec = {**SPEC, "training": {**SPEC["training"], "lr_schedule": "cosine"}}
    with pytest.raises(InputError, match=r"different spec \(training\.lr_schedule differ"):
        _train(phantom_store, out, spec)
    model, said = _train(phantom_store, out, spec, restart_on_change=True)
    assert any("different spec" in m and "starting afresh" in m for m in said), said
    assert read_model(model)["meta"]["training"]["lr_schedule"] == "cosine"


def test_deleted_best_checkpoint_is_not_exported_as_best(
    phantom_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    model, _ = _train(phantom_store, out)
    best = read_model(model)["meta"]
    assert (
        best["select"] == "best"
        and (out / "checkpoints" / f"best-step{best['val_best_step']}.pt").exists()
    )
    model.unlink()
    for f in (out / "checkpoints").glob("best-step*.pt"):
        f.unlink()
    with pytest.raises(TrainingError, match=r"best-step\d+\.pt.*missing") as exc:
        _train(phantom_store, out)
    assert len(str(exc.value).splitlines()) == 1
    assert not model.exists()


def test_zero_steps_of_a_trainable_method_are_refused() -> None:
    from mrbench.config.resolve import check_config
    from mrbench.training.settings import resolve_training
    from mrbench_methods import get_plugin

    with pytest.raises(InputError, match=r"training\.steps: 0"):
        resolve_training(get_plugin("cyclegan"), {"steps": 0})
    assert resolve_training(get_plugin("identity"), {"steps": 0})["steps"] == 0  # nothing to train
    cfg = load_config()
    cfg["methods"] = {m: cfg["methods"][m] for m in ("identity", "cyclegan")}
    cfg["training"]["steps"] = 0
    with pytest.raises(ConfigError, match=r"config key training\.steps: 0") as exc:
        check_config(cfg)
    assert len(str(exc.value).splitlines()) == 1


@pytest.mark.parametrize(
    "edit, problem",
    [
        ({"phantom002": None, "phantom009": "train"}, "phantom009"),
        ({"phantom002": "test", "phantom002 ": "train"}, "more than once"),
    ],
)
def test_bad_split_file_fails_the_config_check(tmp_path: Path, edit: dict, problem: str) -> None:
    from mrbench.config.resolve import check_split_files

    cfg = load_config()
    path = _edited_split(Path("config/splits/phantom_test.tsv"), tmp_path / "split.tsv", edit)
    cfg["datasets"]["phantom"]["split_file"] = str(path)
    with pytest.raises(ConfigError, match=problem) as exc:
        check_split_files(cfg)
    assert str(path) in str(exc.value) and len(str(exc.value).splitlines()) == 1


def _edited_split(src: Path, dst: Path, edit: dict[str, str | None]) -> Path:
    """``src`` (under the project root when relative) with subjects moved (``None``: removed);
    a key with a trailing space adds a second row for that subject."""
    from conftest import ROOT

    df = pd.read_csv(src if src.is_absolute() else ROOT / src, sep="\t", dtype=str)
    for subject, split in edit.items():
        row = pd.DataFrame({"subject": [subject.strip()], "split": [split]})
        if subject.endswith(" ") or subject not in set(df["subject"]):
            df = pd.concat([df, row], ignore_index=True)
        elif split is None:
            df = df[df["subject"] != subject]
        else:
            df.loc[df["subject"] == subject, "split"] = split
    df.to_csv(dst, sep="\t", index=False)
    return dst


# ------------------------------------------------------------------ end to end
#: the cheapest methods of config/test.yaml: the two fitted ones and the cheapest trained one
E2E_METHODS = ("identity", "intensity_map", "cyclegan")
TRAINED = ("intensity_map", "cyclegan")


def _models(work: Path) -> dict[str, dict]:
    return {
        m: read_model(work / "results" / "models" / "phantom" / m / "seed0" / "model.pt")
        for m in E2E_METHODS
    }


def test_changed_split_retrains_every_model_and_changes_the_tables(tmp_path: Path) -> None:
    """The tiny workflow (three methods) to the end; phantom002 moves from train to test; the
    rerun retrains every model on the new split and the tables change; then a split naming an
    unknown subject, or one subject twice, stops the workflow with the config error although
    every result exists."""
    import os
    import sys

    from conftest import ROOT

    (tmp_path / "w").mkdir()
    work = copy_workflow(tmp_path / "w")
    cfg = load_config()
    cfg["methods"] = {m: cfg["methods"][m] for m in E2E_METHODS}
    # the T1w/T2w pair only: what follows the split is the same for every pair, and the tiny run
    # (tests/test_workflow.py) covers the other pair
    cfg["datasets"]["phantom"].pop("pairs", None)
    cfg["evaluation"].update(
        method_order=list(E2E_METHODS),
        reference_method="cyclegan",
        efficiency_pair=["cyclegan", "intensity_map"],
    )
    (work / "config" / "test.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    args = ("--cores", "2", "--configfile", "config/test.yaml")
    res = snakemake(work, *args, env=env, timeout=1200)
    assert res.returncode == 0, res.stderr[-4000:]
    store = work / "results" / "data" / "phantom" / "slices"
    old_digest = data_digest(store)
    before = _models(work)
    table = work / "results" / "tables" / "results_tidy.csv.gz"
    old_table = pd.read_csv(table)
    table1 = work / "results" / "tables" / "table1.csv"
    old_table1 = table1.read_text()
    split = work / cfg["datasets"]["phantom"]["split_file"]
    _edited_split(split, split, {"phantom002": "test"})

    res = snakemake(work, *args, env=env, timeout=1200)
    assert res.returncode == 0, res.stderr[-4000:]
    new_digest = data_digest(store)
    assert new_digest != old_digest
    after = _models(work)
    for m, record in after.items():
        assert record["meta"]["inputs"]["data"] == new_digest, m
        assert before[m]["meta"]["inputs"]["data"] == old_digest, m
    log = (work / "results" / "logs" / "train" / "phantom" / "cyclegan" / "seed0.log").read_text()
    assert "starting afresh" in log and "resuming from" not in log, log
    for m in TRAINED:
        assert any(not torch.equal(after[m]["state"][k], v) for k, v in before[m]["state"].items())
    new_table = pd.read_csv(table)
    assert set(new_table["subject"]) != set(old_table["subject"])
    assert "phantom002" in set(new_table["subject"])
    assert table1.read_text() != old_table1

    good = split.read_text()
    for edit, problem in (
        ({"phantom002": None, "phantom009": "train"}, "phantom009"),
        ({"phantom002 ": "train"}, "more than once"),
    ):
        split.write_text(good)
        _edited_split(split, split, edit)
        res = snakemake(work, *args, env=env, timeout=600)
        assert res.returncode != 0 and "ConfigError" in res.stderr and problem in res.stderr, (
            res.stdout[-2000:] + res.stderr[-2000:]
        )
