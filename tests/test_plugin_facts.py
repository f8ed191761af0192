"""Parsing the workflow does not import torch: the method plugins' facts come from a cache that
any change to a plugin file invalidates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mrbench import plugin_facts

ROOT = Path(__file__).resolve().parents[1]

PARSE = """
import sys, yaml
from mrbench.config import check_config, method_display_names, method_spec_dict
import mrbench.evaluate, mrbench.resources
config = yaml.safe_load(open("config/config.yaml"))
check_config(config)
specs = [method_spec_dict(config, m) for m in config["methods"]]
method_display_names(config)
print(sorted(m for m in ("torch", "nibabel", "skimage", "scipy.stats") if m in sys.modules))
"""


def _parse(cache: Path) -> list[str]:
    env = {**os.environ, "MRBENCH_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-c", PARSE], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().replace("'", '"'))


def test_facts_equal_the_plugin_classes(tmp_path: Path, monkeypatch) -> None:
    from methods import registry

    monkeypatch.setenv("MRBENCH_CACHE_DIR", str(tmp_path))
    plugin_facts._MEMO.clear()
    facts = plugin_facts.method_facts()
    assert set(facts) == set(registry())
    for name, cls in registry().items():
        assert facts[name]["defaults"] == json.loads(json.dumps(dict(cls.defaults)))
        assert facts[name]["trainable"] == bool(cls.trainable)
        assert facts[name]["display_name"] == cls.label()
    assert len(list(tmp_path.glob("method-plugins-*.json"))) == 1
    plugin_facts._MEMO.clear()
    assert plugin_facts.method_facts() == facts  # from the cache


def test_parsing_with_a_warm_cache_imports_no_torch(tmp_path: Path) -> None:
    assert "torch" in _parse(tmp_path)  # cold: the plugins are read once
    assert _parse(tmp_path) == []  # warm: neither torch nor the heavy readers


def test_a_changed_plugin_file_changes_the_key(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    plugin = folder / "mine.py"
    plugin.write_text("X = 1\n")
    before = plugin_facts.fingerprint([folder])
    time.sleep(0.01)
    plugin.write_text("X = 22\n")
    assert plugin_facts.fingerprint([folder]) != before
    assert plugin_facts.fingerprint() != before
