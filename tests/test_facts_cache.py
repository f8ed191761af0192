"""The cache of the plugins' answers that lets the workflow be read without torch
(mrbench.config.facts_cache): same answers as computed ones, fresh ones after a code change, bad
configs still refused, warnings kept, and a dry run that imports no torch once warm."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import copy_workflow, load_config, snakemake

from mrbench.config import facts_cache
from mrbench.config.resolve import ConfigError, check_config, method_spec_dict
from mrbench.config.roster import roster_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(facts_cache.ENV, raising=False)
    yield tmp_path / "cache"
    facts_cache.disable()


def test_cached_answers_equal_computed_ones(cache: Path) -> None:
    config = load_config()
    computed = {m: method_spec_dict(config, m) for m in config["methods"]}
    roster = roster_of(config).to_dict()
    path = facts_cache.enable(cache, config)
    check_config(config)
    first = {m: method_spec_dict(config, m) for m in config["methods"]}
    assert path is not None and path.is_file()
    facts_cache.enable(cache, config)  # a new process: answers read back from the file
    hits = {m: method_spec_dict(config, m) for m in config["methods"]}
    assert first == computed and hits == computed
    assert roster_of(config).to_dict() == roster and roster_of(config).to_dict() == roster
    hits[next(iter(hits))]["training"]["steps"] = -1  # callers may change what they get
    assert {m: method_spec_dict(config, m) for m in config["methods"]} == computed


def test_bad_config_is_refused_with_a_warm_cache(cache: Path) -> None:
    config = load_config()
    facts_cache.enable(cache, config)
    check_config(config)
    config["methods"]["cyclegan"]["params"] = {"n_blokcs": 3}
    with pytest.raises(ConfigError, match="methods.cyclegan.params.n_blokcs"):
        check_config(config)
    with pytest.raises(ConfigError, match="n_blokcs"):  # errors are never stored
        check_config(config)


def test_a_changed_plugin_file_gives_a_new_cache(cache: Path, tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "helper.py").write_text("X = 1\n")
    config = {**load_config(), "plugin_paths": [str(folder)]}
    first = facts_cache.enable(cache, config)
    assert facts_cache.enable(cache, config) == first
    (folder / "helper.py").write_text("X = 2\n")
    assert facts_cache.enable(cache, config) != first


def test_renamed_parameters_warn_on_every_run(cache: Path) -> None:
    config = {"methods": {"s": {"plugin": "syndiff", "params": {"nf": 8}}}, "training": {}}
    facts_cache.enable(cache, config)
    for _ in range(2):  # computed, then from the cache
        with pytest.warns(UserWarning, match="methods.s.params.*'nf' is now 'unet_ch'"):
            assert method_spec_dict(config, "s")["params"]["unet_ch"] == 8


def test_off_switch(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(facts_cache.ENV, "0")
    assert facts_cache.enable(cache, load_config()) is None
    method_spec_dict(load_config(), "identity")
    assert not cache.exists()


def test_warm_dry_run_imports_no_torch(tmp_path: Path) -> None:
    """Reading the workflow a second time (unchanged config and code) imports no torch: the
    interpreter's import log (PYTHONPROFILEIMPORTTIME) of the dry run has no torch in it."""
    copy_workflow(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONPROFILEIMPORTTIME": "1"}
    env.pop(facts_cache.ENV, None)
    logs = []
    for _ in range(2):
        args = ("-n", "--cores", "1", "--configfile", "config/test.yaml")
        res = snakemake(tmp_path, *args, env=env, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        logs.append(res.stderr)

    def imports_torch(log: str) -> bool:
        return any(line.split("|")[-1].strip() == "torch" for line in log.splitlines())

    assert imports_torch(logs[0])  # the cold run checks the config with the plugins
    assert not imports_torch(logs[1])
    assert list((tmp_path / ".snakemake" / "mrbench").glob("facts-*.json"))
