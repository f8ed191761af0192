"""UNIT-DDPM's collapse check: validation logs its translators' PSNR against their own input and
against the target, and the efficiency table shows both."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch

from mrbench.reporting.efficiency import efficiency
from mrbench.reporting.render import MISSING
from mrbench.reporting.train_logs import translator_psnr
from mrbench.slices import SliceStore
from mrbench.training.validation import validate, validation_rows
from mrbench_methods import get_plugin


def test_identity_translators_show_in_validation(phantom_store: Path) -> None:
    cls = get_plugin("unit_ddpm")
    store = SliceStore(phantom_store / "val")
    rows = validation_rows(store, 4)
    torch.manual_seed(0)
    method = cls({**cls.tiny_params, "sample_steps": 2}, image_size=store.size)
    trained = validate(method, store, rows, 4, torch.device("cpu"))
    for key in ("psnr_translator_vs_input", "psnr_translator_vs_target"):
        assert math.isfinite(trained[key]) and f"{key}_t1_to_t2" in trained
    method.g_a, method.g_b = torch.nn.Identity(), torch.nn.Identity()  # collapsed translators
    collapsed = validate(method, store, rows, 4, torch.device("cpu"))
    assert collapsed["psnr_translator_vs_input"] >= 99  # valmetrics caps identical images
    assert collapsed["psnr_translator_vs_target"] < 30
    # methods without translators log no such column
    plain = validate(get_plugin("identity")({}, store.size), store, rows, 4, torch.device("cpu"))
    assert not any("translator" in k for k in plain)


def test_efficiency_table_shows_translator_psnr() -> None:
    log = pd.DataFrame(
        {"step": [2, 4], "psnr": [9.0, 10.0], "psnr_translator_vs_input": [30.0, 41.5]}
        | {"psnr_translator_vs_target": [9.5, 9.8], "seconds_elapsed": [1.0, 2.0]}
    )
    facts = translator_psnr(log)
    assert facts == {"translator_psnr_vs_input": 41.5, "translator_psnr_vs_target": 9.8}
    base = {"dataset": "phantom", "parameters": 10, "train_images_per_s": 1.0}
    base |= {"peak_mem_mb": 1.0, "train_steps": 4, "best_val_psnr": 10.0, "device": ""}
    base |= {"inference_s_per_slice": 0.1, "sampling_steps": 4, "_val_log": log}
    runs = [base | {"method": "unit_ddpm"} | facts]
    runs.append(base | {"method": "cyclegan"} | translator_psnr(log[["step", "psnr"]]))
    doc, df = efficiency(runs)
    titles = doc.column_titles()
    col = titles.index("Translator PSNR vs input")
    by_method = {r[1].text: r for r in doc.rows}
    assert by_method["unit_ddpm"][col].text == "41.50"
    assert by_method["unit_ddpm"][col + 1].text == "9.80"
    assert by_method["cyclegan"][col].text == MISSING
