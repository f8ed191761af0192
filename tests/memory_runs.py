"""Shared by the MGUIT and HiFi-Syn tests: a short demo-size training run vs identity."""

from __future__ import annotations

from pathlib import Path

import yaml

from mrbench.training import loop as trainer

ROOT = Path(__file__).resolve().parents[1]


def demo_entry(method: str) -> dict:
    """The method's entry of config/demo.yaml (anchors and merges resolved by the YAML loader)."""
    return yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["methods"][method]


def final_val_psnr(out: Path) -> float:
    import pandas as pd

    return float(pd.read_csv(out / "val_log.csv")["psnr"].iloc[-1])


def run_demo(method: str, store: Path, out: Path) -> tuple[float, float]:
    """Train ``method`` at its demo size for its demo steps; return (its, identity's) final
    validation PSNR on the same slices."""
    entry = demo_entry(method)
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    training = {**demo["training"], **(entry.get("training") or {})}
    steps = int(training["steps"])
    spec = {
        "method": method,
        "plugin": entry["plugin"],
        "params": entry["params"],
        "training": {
            **training,
            "val_every": steps,
            "checkpoint_every": steps,
            "val_max_slices": 16,
        },
    }
    trainer.train(spec, store, out / method, seed=0, device="cpu", progress=False)
    ident = {"method": "identity", "plugin": "identity", "training": {"val_max_slices": 16}}
    trainer.train(ident, store, out / "identity", seed=0, device="cpu", progress=False)
    return final_val_psnr(out / method), final_val_psnr(out / "identity")
