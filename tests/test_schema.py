"""The config schema documents every key (the training and evaluation keys included) and holds
the defaults that the library and the command line use."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def _resolve(node: dict) -> dict:
    ref = node.get("$ref")
    if not ref:
        return node
    target = SCHEMA
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**_resolve(target), **{k: v for k, v in node.items() if k != "$ref"}}


def _undocumented(node: dict, path: str) -> list[str]:
    node = _resolve(node)
    missing = []
    for part in node.get("allOf", []):
        missing += _undocumented(part, path)
    for key, sub in (node.get("properties") or {}).items():
        full = _resolve(sub)
        inherited = any(
            key in (_resolve(part).get("properties") or {}) for part in node.get("allOf", [])
        )
        if not full.get("description") and not inherited:
            missing.append(f"{path}.{key}")
        missing += _undocumented(sub, f"{path}.{key}")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        missing += _undocumented(extra, f"{path}.<name>")
    return missing


def test_every_key_is_documented() -> None:
    assert _undocumented(SCHEMA, "config") == []


def test_training_and_evaluation_keys_are_in_the_schema() -> None:
    training = SCHEMA["$defs"]["training"]["properties"]
    assert {"steps", "batch_size", "lr_schedule", "ema_decay", "gpus_per_job"} <= set(training)
    evaluation = SCHEMA["$defs"]["evaluation"]["properties"]
    assert {"protocols", "reference_method", "fid", "qualitative"} <= set(evaluation)


def test_config_readme_and_license_exist() -> None:
    text = (ROOT / "config" / "README.md").read_text()
    for name in ("config.yaml", "demo.yaml", "test.yaml", "config.schema.yaml"):
        assert name in text
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_contrast_names_match_the_library() -> None:
    """The schema's contrasts and direction pattern are those of mrbench.domain.CONTRASTS (a
    contrast added there must be added here, or configs could not name it)."""
    import re

    from mrbench.domain import CONTRASTS

    defs = SCHEMA["$defs"]
    assert defs["contrast"]["enum"] == list(CONTRASTS)
    pattern = re.compile(defs["direction"]["pattern"])
    for a in CONTRASTS:
        for b in CONTRASTS:
            assert pattern.fullmatch(f"{a}_to_{b}")
    assert not pattern.fullmatch("t1_to_dwi") and not pattern.fullmatch("t1-to-t2")
    pairs = _resolve(defs["dataset_common"])["properties"]["pairs"]
    assert pairs["x-default"] == [["t1", "t2"]] and "default" not in pairs
    assert "directions" not in SCHEMA["required"]
