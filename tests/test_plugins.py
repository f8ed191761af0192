"""Out-of-tree methods and the roster: a method in the user's own folder (config ``plugin_paths``)
or in an installed package (entry-point group ``mrbench.methods``) is a method like the built-in
ones - in the registry, the contract tests, every table of the workflow and its report - and the
library never names it. Variants keep their ablation row and checkmarks whatever they are called.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_module, tidy_row
from toy_plugins import write_folder_plugin, write_installed_dist

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch):
    """The registry as the built-in plugins leave it, restored after the test."""
    from mrbench_methods import base

    builtin = base.registry()
    monkeypatch.setattr(base, "_REGISTRY", dict(builtin))
    monkeypatch.setattr(base, "_ENTRY_POINTS_LOADED", False)
    monkeypatch.delenv(base.PLUGIN_PATH_ENV, raising=False)
    return base


# ---------------------------------------------------------------------- loading
def test_plugin_folder_of_the_config_registers_its_methods(tmp_path, fresh_registry) -> None:
    from mrbench.config.resolve import check_config, load_plugins
    from mrbench.config.roster import roster_of

    folder = tmp_path / "my_methods"
    write_folder_plugin(folder)
    (folder / "_helper.py").write_text("raise RuntimeError('private files are not plugins')\n")
    config = {
        "plugin_paths": [str(folder)],
        "methods": {"mine": {"plugin": "toy_folder"}, "identity": {"plugin": "identity"}},
    }
    check_config(config)
    load_plugins(config)  # a second load imports nothing twice
    cls = fresh_registry.get_plugin("toy_folder")
    assert cls.plugin_name == "toy_folder" and cls.seconds_per_image_256 == 0.01
    roster = roster_of(config)
    assert roster.label("mine") == "Toy folder method"
    assert roster.entries["mine"].citation == "Folder et al., 2026"
    assert roster.table1 == ["mine", "identity"] and roster.reference == "identity"


def test_plugin_folders_fail_clearly(tmp_path, fresh_registry) -> None:
    from mrbench.config.resolve import ConfigError, check_config

    with pytest.raises(ConfigError, match="plugin_paths: folder .*nowhere not found"):
        check_config({"plugin_paths": [str(tmp_path / "nowhere")], "methods": {}})
    for module, text, match in [
        ("broken", "import no_such_module_anywhere", "method plugin failed to import"),
        ("old_name", "from methods.base import TranslationMethod", ".*from mrbench_methods.base"),
    ]:
        (tmp_path / module).mkdir()
        (tmp_path / module / f"{module}.py").write_text(f"{text}\n")
        with pytest.raises(ImportError, match=f"{module}.py: {match}"):
            fresh_registry.load_plugin_paths([tmp_path / module])
    clash = tmp_path / "clash"
    write_folder_plugin(clash, "cyclegan")
    with pytest.raises(ImportError, match="registered twice"):
        fresh_registry.load_plugin_paths([clash])


def test_environment_folder_and_entry_point_plugins(tmp_path, fresh_registry, monkeypatch):
    """What every job sees: MRBENCH_PLUGIN_PATH (set by the workflow) and installed packages."""
    write_folder_plugin(tmp_path / "env_methods", "toy_env")
    monkeypatch.setenv(fresh_registry.PLUGIN_PATH_ENV, str(tmp_path / "env_methods"))
    monkeypatch.syspath_prepend(str(write_installed_dist(tmp_path / "site")))
    plugins = fresh_registry.registry()
    assert {"toy_env", "toy_ep"} <= set(plugins)
    assert plugins["toy_ep"].plugin_name == "toy_ep"
    assert plugins["toy_ep"].label() == "Toy entry-point method"


def test_contract_tests_pick_up_out_of_tree_plugins(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    write_folder_plugin(folder)
    site = write_installed_dist(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    args = ["tests/test_contract.py", "--plugin-path", str(folder), "-q", "-p", "no:cacheprovider"]
    res = run_module("pytest", *args, "-k", "toy_folder or toy_ep", cwd=ROOT, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "10 passed" in res.stdout, res.stdout[-2000:]  # 5 contract tests x 2 toys


# ---------------------------------------------------------------------- roster and tables
def _summary(methods: dict[str, float]):
    from mrbench.evaluation import stats

    rng = np.random.default_rng(0)
    rows = [
        tidy_row(dataset="ixi", method=m, direction=r, subject=f"s{s}", metric=metric)
        | {"value": base + s + rng.normal(0, 0.1) + (50 if metric == "ssim" else 0)}
        for m, base in methods.items()
        for r in ("t1_to_t2", "t2_to_t1")
        for s in range(3)
        for metric in ("psnr", "ssim")
    ]
    return stats.summarise(pd.DataFrame(rows))


def test_renamed_variant_keeps_its_ablation_row_and_checkmarks() -> None:
    """No name is special: a variant called anything gets Table 2's row from its parameters."""
    from mrbench.config.roster import roster_of
    from mrbench.reporting.benchmark_tables import table1, table2
    from mrbench.reporting.paper import paper_comparison

    config = {
        "methods": {
            "cyclegan": {"plugin": "cyclegan"},
            "full_model": {"plugin": "disdiff", "paper_row": "DisDiff"},
            "without_content_critic": {
                "plugin": "disdiff",
                "params": {"use_content_discriminator": False},
                "paper_row": "Disentangled + diffusion (no D_c)",
            },
            "plain_diffusion": {
                "plugin": "disdiff",
                "params": {"use_disentanglement": False, "use_content_discriminator": False},
            },
        }
    }
    roster = roster_of(config)
    assert roster.ablation == ["plain_diffusion", "without_content_critic", "full_model"]
    assert roster.table1 == ["cyclegan", "full_model"]
    assert roster.reference == "full_model"
    assert roster.with_capability("content_maps") == ["full_model", "without_content_critic"]
    summary = _summary(
        {"cyclegan": 20, "full_model": 26, "without_content_critic": 24, "plain_diffusion": 22}
    )
    doc, df = table2(summary, roster=roster)
    assert [t for t, _ in doc.header[0][1:4]] == ["Disentangled", "Diffusion", "D_c"]
    marks = {m: [c.text for c in row[1:4]] for m, row in zip(df["method"], doc.rows, strict=True)}
    assert marks["without_content_critic"] == ["✓", "✓", "×"]
    assert marks["full_model"] == ["✓", "✓", "✓"]
    assert marks["plain_diffusion"] == ["×", "✓", "×"]
    row = df[df["method"] == "without_content_critic"].iloc[0]
    assert row["Disentangled"] and row["Diffusion"] and not row["D_c"]
    doc1, df1 = table1(summary, roster=roster)
    assert list(dict.fromkeys(df1["method"])) == ["cyclegan", "full_model"]
    assert [r[0].text for r in doc1.rows] == ["CycleGAN", "DisDiff"]
    _, cmp = paper_comparison(summary, roster)
    assert set(cmp["method"]) == {"full_model", "without_content_critic"}
    ablation_reported = cmp[(cmp["table"] == 2) & (cmp["method"] == "without_content_critic")]
    assert sorted(ablation_reported["reported_mean"]) == sorted([23.52, 79.22, 24.31, 81.12])


def test_roles_from_the_config_and_clear_errors() -> None:
    from mrbench.config.roster import Roster, roster_of

    methods = {
        "identity": {"plugin": "identity"},
        "cyclegan": {"plugin": "cyclegan", "label": "CG"},
        "disdiff": {"plugin": "disdiff"},
    }
    roster = roster_of(
        {
            "methods": methods,
            "evaluation": {
                "method_order": ["disdiff", "not_in_this_run", "identity"],
                "table1_methods": ["identity", "disdiff"],
                "reference_method": "identity",
                "efficiency_pair": ["disdiff", "cyclegan"],
            },
        }
    )
    assert roster.order == ["disdiff", "identity", "cyclegan"]
    assert roster.table1 == ["disdiff", "identity"]
    assert roster.label("cyclegan") == "CG" and roster.reference == "identity"
    assert Roster.from_dict(roster.to_dict()) == roster
    with pytest.raises(ValueError, match="evaluation.ablation_methods: 'nope' is not a config"):
        roster_of({"methods": methods, "evaluation": {"ablation_methods": ["nope"]}})
    with pytest.raises(ValueError, match="evaluation.reference_method"):
        roster_of({"methods": methods, "evaluation": {"reference_method": "nope"}})
    # the efficiency table compares exactly two methods (a one-element pair used to pass)
    for pair in (["disdiff"], ["disdiff", "cyclegan", "identity"], ["disdiff", "disdiff"]):
        with pytest.raises(ValueError, match="evaluation.efficiency_pair: expected two"):
            roster_of({"methods": methods, "evaluation": {"efficiency_pair": pair}})


def test_resources_read_the_plugin_traits() -> None:
    from mrbench.config import resources as R
    from mrbench_methods.base import get_plugin

    spec = {"plugin": "syndiff", "training": {"steps": 6000, "batch_size": 1}}
    cost = get_plugin("syndiff").seconds_per_image_256
    assert R.seconds_per_image(spec, 256) == cost
    assert R.train_runtime_minutes({"plugin": "intensity_map", "training": {}}, 256) == (
        R.UNTRAINED_MINUTES
    )
    with pytest.raises(ValueError, match="unknown method plugin 'nope'"):
        R.train_runtime_minutes({"plugin": "nope", "training": {"steps": 1}}, 64)


def test_content_maps_follow_the_capability_of_the_resolved_parameters() -> None:
    """The figure goes to every method offering content maps, and only with the module on."""
    from mrbench.evaluation.content_maps import offers_content_maps
    from mrbench.io import InputError
    from mrbench_methods.base import get_plugin

    cls = get_plugin("disdiff")
    assert "content_maps" in cls.capabilities_for({})
    no_dis = {"use_disentanglement": False, "use_content_discriminator": False}
    assert cls.capabilities_for(no_dis) == frozenset()
    with_dis = cls(dict(cls.tiny_params), image_size=16)
    without = cls({**cls.tiny_params, **no_dis}, image_size=16)
    assert offers_content_maps(with_dis) and not offers_content_maps(without)
    ident = get_plugin("identity")()
    assert not offers_content_maps(ident)
    from mrbench.evaluation.content_maps import content_maps_of

    x = -torch.ones(1, 1, 16, 16)
    a, b = content_maps_of(with_dis, x, x)
    assert a.shape == b.shape and a.shape[0] == 1
    with pytest.raises(InputError, match="does not offer content maps"):
        content_maps_of(without, x, x)


def test_table_roles_stay_out_of_the_metrics_config_hash() -> None:
    """Reordering rows or choosing another reference must not re-score every model."""
    from mrbench.evaluation.scoring import config_hash

    config = {
        "datasets": {"phantom": {"image_size": 16}},
        "methods": {"cyclegan": {"plugin": "cyclegan"}, "identity": {"plugin": "identity"}},
        "evaluation": {"reference_method": "cyclegan"},
    }
    before = config_hash(config, "phantom", "cyclegan")
    config["evaluation"].update(reference_method="identity", method_order=["identity"])
    assert config_hash(config, "phantom", "cyclegan") == before
    config["evaluation"]["protocols"] = ["max01"]
    assert config_hash(config, "phantom", "cyclegan") != before
