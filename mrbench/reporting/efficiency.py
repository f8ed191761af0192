"""The efficiency table: parameters, training throughput and peak memory, time and steps to a
common validation PSNR, inference time per slice, from the facts of every training run
(:func:`run_facts` reads a run's ``model.pt``, its logs and the timing of its translations)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mrbench.config.roster import Roster
from mrbench.pairs import is_default, pair_from_meta, pair_label
from mrbench.reporting.labels import dataset_label, row_label
from mrbench.reporting.notes import methods_note
from mrbench.reporting.render import MISSING, Cell, TableDoc, flat_header, fmt_num
from mrbench.reporting.train_logs import read_csv_or_empty, time_to_threshold, translator_psnr

#: the pair of facts gathered before runs recorded one
DEFAULT_PAIR_KEY = "t1/t2"


def _task(f: dict[str, Any]) -> tuple[str, str]:
    """A run's task: its dataset and contrast pair (thresholds and rows are per task)."""
    pair = f.get("pair")
    return f["dataset"], pair if isinstance(pair, str) and pair else DEFAULT_PAIR_KEY


def task_label(dataset: str, pair: str) -> str:
    """``IXI`` for the T1w/T2w pair (today's rows), ``Phantom T2w/FLAIR`` for another."""
    contrasts = pair.split("/")
    if is_default(contrasts):
        return dataset_label(dataset)
    return f"{dataset_label(dataset)} {pair_label(contrasts)}"


def run_facts(
    model_path: str | Path,
    prediction_dirs: list[str | Path] = (),
    *,
    dataset: str,
    seed: int,
) -> dict[str, Any]:
    """Efficiency facts of one training run: its ``model.pt`` (the training logs lie beside it)
    and the folders of its translated test sets (``timing.json``)."""
    import torch

    from mrbench.checkpoint import load_model, read_model

    model_path = Path(model_path)
    run_dir = model_path.parent
    record = read_model(model_path)
    # parameters: tensors of the state dict that are parameters of the built networks
    model = load_model(model_path, "cpu")
    n_params = int(sum(p.numel() for p in model.parameters()))
    per_net = model.num_parameters()
    del model
    facts: dict[str, Any] = {
        "dataset": dataset,
        # the contrast pair the run trained on (model.pt meta; T1w/T2w before pairs existed)
        "pair": "/".join(pair_from_meta(record.get("meta"))),
        "method": record["method"],
        "plugin": record["plugin"],
        "seed": int(seed),
        "parameters": n_params,
        "parameters_per_network": json.dumps(per_net, sort_keys=True),
        "state_tensors": int(
            sum(v.numel() for v in record["state"].values() if isinstance(v, torch.Tensor))
        ),
    }
    spec = {}
    if (run_dir / "spec.json").exists():
        spec = json.loads((run_dir / "spec.json").read_text())
    training = spec.get("training") or record.get("meta", {}).get("training") or {}
    batch = training.get("batch_size")
    train_log = read_csv_or_empty(run_dir / "train_log.csv")
    if not train_log.empty and "sec_per_step" in train_log and batch:
        sps = pd.to_numeric(train_log["sec_per_step"], errors="coerce")
        facts["train_images_per_s"] = float(batch / sps.mean()) if sps.mean() > 0 else math.nan
    else:
        facts["train_images_per_s"] = math.nan
    facts["peak_mem_mb"] = (
        float(pd.to_numeric(train_log["peak_mem_mb"], errors="coerce").max())
        if "peak_mem_mb" in train_log
        else math.nan
    )
    facts["train_steps"] = int(train_log["step"].max()) if "step" in train_log else 0
    val_log = read_csv_or_empty(run_dir / "val_log.csv")
    facts["_val_log"] = val_log
    facts["best_val_psnr"] = (
        float(pd.to_numeric(val_log["psnr"], errors="coerce").max())
        if "psnr" in val_log
        else math.nan
    )
    facts |= translator_psnr(val_log)
    facts["train_seconds"] = (
        float(pd.to_numeric(val_log["seconds_elapsed"], errors="coerce").max())
        if "seconds_elapsed" in val_log
        else math.nan
    )
    per_slice, steps = [], []
    for d in prediction_dirs:
        t = Path(d) / "timing.json"
        if t.exists():
            timing = json.loads(t.read_text())
            per_slice.append(float(timing["seconds_per_slice"]))
            if timing.get("sampling_steps") is not None:
                steps.append(float(timing["sampling_steps"]))
    facts["inference_s_per_slice"] = float(np.mean(per_slice)) if per_slice else math.nan
    facts["sampling_steps"] = float(np.mean(steps)) if steps else math.nan
    device = run_dir / "device.txt"
    facts["device"] = device.read_text().strip().splitlines()[0] if device.exists() else ""
    return facts


def efficiency(
    facts: list[dict[str, Any]],
    threshold_psnr: float | None = None,
    pair: list[str] | tuple[str, ...] | None = None,
    roster: Roster | None = None,
) -> tuple[TableDoc, pd.DataFrame]:
    """The efficiency table from :func:`run_facts` of every run.

    The validation threshold is ``threshold_psnr`` or, if None, per dataset the highest PSNR
    that every method of ``pair`` reached (the smaller of their best validation PSNRs; the
    paper compares DisDiff's convergence with SynDiff's) or, without the whole pair (default:
    the roster's ``efficiency_pair``), the highest PSNR every trained method reached. Methods
    that never reach it show "-".
    """
    if pair is None:
        pair = roster.efficiency_pair if roster is not None else []
    pair = tuple(pair)
    roster = roster if roster is not None else Roster.plain([f["method"] for f in facts])
    thresholds = _thresholds(facts, threshold_psnr, pair)
    df = _efficiency_frame(facts, thresholds)
    header = flat_header(
        *("Dataset", "Method", "Params (M)", "Train img/s", "Peak mem (MB)", "Steps to thr."),
        *("Time to thr. (s)", "Inference (s/slice)", "Translator PSNR vs input"),
        *("Translator PSNR vs target", "Sampling steps"),
    )
    rows = _efficiency_rows(df, roster) if not df.empty else []
    notes = _efficiency_notes(facts, thresholds, threshold_psnr is not None, pair, roster)
    doc = TableDoc("Efficiency of the methods.", header, rows, "ll" + "c" * 9, notes)
    return doc, df


def _thresholds(
    facts: list[dict[str, Any]], threshold_psnr: float | None, pair: tuple[str, ...]
) -> dict[tuple[str, str], float]:
    """The validation PSNR threshold per dataset and contrast pair (see :func:`efficiency`)."""
    thresholds: dict[tuple[str, str], float] = {}
    for d in dict.fromkeys(_task(f) for f in facts):
        if threshold_psnr is not None:
            thresholds[d] = float(threshold_psnr)
            continue
        trained = [
            f
            for f in facts
            if _task(f) == d and f["train_steps"] > 0 and math.isfinite(f["best_val_psnr"])
        ]
        in_pair = [f for f in trained if f["method"] in pair]
        if pair and {f["method"] for f in in_pair} == set(pair):
            trained = in_pair
        bests = [f["best_val_psnr"] for f in trained]
        thresholds[d] = float(min(bests)) if bests else math.nan
    return thresholds


def _efficiency_frame(
    facts: list[dict[str, Any]], thresholds: dict[tuple[str, str], float]
) -> pd.DataFrame:
    """The efficiency CSV: each run's facts with its steps and seconds to the threshold."""
    records = []
    for f in facts:
        step, secs = (math.nan, math.nan)
        if f["train_steps"] > 0:
            step, secs = time_to_threshold(f["_val_log"], thresholds[_task(f)])
        rec = {k: v for k, v in f.items() if not k.startswith("_")}
        rec["pair"] = _task(f)[1]
        rec.update(
            threshold_psnr=thresholds[_task(f)],
            steps_to_threshold=step,
            seconds_to_threshold=secs,
        )
        records.append(rec)
    df = pd.DataFrame(records)
    for col in ("sampling_steps", "translator_psnr_vs_input", "translator_psnr_vs_target"):
        if not df.empty and col not in df:
            df[col] = math.nan  # facts gathered before the column existed
    return df


def _efficiency_rows(df: pd.DataFrame, roster: Roster) -> list[list[Cell]]:
    """One row per dataset, contrast pair and method (seeds averaged), in roster order within
    a dataset and pair."""
    agg = (
        df.groupby(["dataset", "pair", "method"], sort=False)
        .agg(
            parameters=("parameters", "mean"),
            train_images_per_s=("train_images_per_s", "mean"),
            peak_mem_mb=("peak_mem_mb", "max"),
            steps_to_threshold=("steps_to_threshold", "mean"),
            seconds_to_threshold=("seconds_to_threshold", "mean"),
            inference_s_per_slice=("inference_s_per_slice", "mean"),
            sampling_steps=("sampling_steps", "mean"),
            translator_vs_input=("translator_psnr_vs_input", "mean"),
            translator_vs_target=("translator_psnr_vs_target", "mean"),
        )
        .reset_index()
    )
    order = roster.ordered(list(agg["method"]))
    agg["_o"] = agg["method"].map(order.index)
    rows = []
    agg["_p"] = agg["pair"].map(lambda p: f"{int(not is_default(p.split('/')))}{p}")
    for r in agg.sort_values(["dataset", "_p", "_o"], kind="stable").itertuples():
        rows.append(
            [
                Cell(task_label(r.dataset, r.pair)),
                Cell(row_label(roster, r.method)),
                Cell(fmt_num(r.parameters / 1e6, 3)),
                Cell(fmt_num(r.train_images_per_s, 1)),
                Cell(fmt_num(r.peak_mem_mb, 0)),
                Cell(fmt_num(r.steps_to_threshold, 0)),
                Cell(fmt_num(r.seconds_to_threshold, 1)),
                Cell(fmt_num(r.inference_s_per_slice, 4)),
                Cell(fmt_num(r.translator_vs_input)),
                Cell(fmt_num(r.translator_vs_target)),
                Cell(fmt_num(r.sampling_steps, 0)),
            ]
        )
    return rows


def _efficiency_notes(
    facts: list[dict[str, Any]],
    thresholds: dict[tuple[str, str], float],
    configured: bool,
    pair: tuple[str, ...],
    roster: Roster,
) -> list[str]:
    """The threshold (``configured``: set in the config), what each column measures, devices."""
    thr = ", ".join(f"{task_label(*k)} {fmt_num(t)} dB" for k, t in thresholds.items())
    devices = sorted({f["device"] for f in facts if f.get("device")})
    notes = [
        f"Validation PSNR threshold: {thr or MISSING}"
        + (
            " (set in the config)"
            if configured
            else (
                f" (the highest validation PSNR both {' and '.join(map(roster.label, pair))}"
                " reached, or, without both, every trained method)"
                if pair
                else " (the highest validation PSNR every trained method reached)"
            )
        ),
        "Training images/s = batch size / mean seconds per step (train_log.csv); peak memory: "
        "CUDA memory allocated on a GPU, the process's resident memory on the CPU.",
        "Inference: model calls only, mean over the test splits of both directions "
        "(timing.json). Several seeds are averaged.",
        "Translator PSNR (dB, last validation, both directions): the output of a method's "
        "translator networks against their own input and against the target; near-identity "
        "translators (a collapse every loss of UNIT-DDPM allows) score high against the input.",
    ]
    if devices:
        notes.append("Devices: " + "; ".join(devices) + ".")
    if (n := methods_note(roster, roster.ordered([f["method"] for f in facts]))) is not None:
        notes.append(n)
    return notes
