"""How much the ranking of methods depends on the metric protocol: ranks under every protocol
and metric, and Kendall's tau between every pair of those rankings.

Papers on MRI translation normalise, mask, window and average differently; a ranking that holds
under one protocol may not hold under another. Per dataset and direction, every method
is ranked (1 = best, ties share their mean rank; supervised references left out, as in Table 1)
by its mean under each protocol / metric column (the protocol's own aggregation,
:func:`mrbench.evaluation.stats.summarise`), and Kendall's tau-b
(``scipy.stats.kendalltau``) compares every pair of columns over the methods ranked in both.
The table writes both as ``results/tables/protocols.{csv,md,tex}``; the figure shows the tau
matrices as heat maps.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from mrbench.config.roster import Roster
from mrbench.evaluation.protocols import PROTOCOLS, base_metric, higher_is_better
from mrbench.reporting.labels import (
    dataset_label,
    default_pair_only,
    direction_label,
    roster_or_plain,
)
from mrbench.reporting.render import MISSING, Cell, TableDoc, fmt_num

#: the metrics' names in the table
METRIC_LABELS = {"psnr": "PSNR", "ssim": "SSIM", "ssim_gauss": "SSIM (Gauss)", "mae": "MAE"}
METRIC_LABELS["msssim"] = "MS-SSIM"
DEFAULT_METRICS = ("psnr", "ssim", "msssim", "psnr_lesion", "ssim_lesion", "ssim_healthy")


def metric_label(metric: str) -> str:
    """``ssim_lesion`` -> ``SSIM lesion``."""
    base = base_metric(metric)
    region = metric.removeprefix(base).lstrip("_")
    return f"{METRIC_LABELS.get(base, base)} {region}".strip()


def rank_columns(summary: pd.DataFrame, metrics: list[str]) -> list[tuple[str, str]]:
    """(protocol, metric) columns present in ``summary``: protocols in their defined order
    (unknown ones after), metrics in the given order."""
    have = set(zip(summary["protocol"], summary["metric"], strict=True))
    protos = [p for p in PROTOCOLS if p in set(summary["protocol"])]
    protos += sorted(set(summary["protocol"]) - set(protos))
    return [(p, m) for p in protos for m in metrics if (p, m) in have]


def _ranks(values: pd.Series, metric: str) -> pd.Series:
    """1 = best; ties share their mean rank; NaN values are not ranked."""
    v = values.astype(float).replace([np.inf], 1e300).replace([-np.inf], -1e300)
    return v.rank(ascending=not higher_is_better(metric), method="average")


def _tau(a: pd.Series, b: pd.Series) -> tuple[float, int]:
    """Kendall's tau-b of two rankings over the methods ranked in both, and their number."""
    from scipy.stats import kendalltau

    both = a.notna() & b.notna()
    n = int(both.sum())
    if n < 2 or a[both].nunique() < 2 or b[both].nunique() < 2:
        return math.nan, n
    return float(kendalltau(a[both], b[both]).statistic), n


def protocol_rankings(
    summary: pd.DataFrame, metrics: list[str] | None = None, roster: Roster | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per dataset and direction: the ranks (``rank`` rows: dataset, direction, method,
    protocol, metric, mean, rank) and the tau of every pair of columns (``tau`` rows:
    dataset, direction, protocol/metric a and b, tau, n_methods). The paper's pair only
    (T1w/T2w), as Table 1."""
    summary = default_pair_only(summary)
    metrics = list(metrics or DEFAULT_METRICS)
    roster = roster_or_plain(roster, summary)
    ranks, taus = [], []
    cols = rank_columns(summary, metrics) if not summary.empty else []
    for (d, r), grp in summary.groupby(["dataset", "direction"], sort=False):
        methods = roster.ordered(list(dict.fromkeys(grp["method"])))
        # supervised references (trained on pairs) are a ceiling, never ranked with the rest
        methods = [m for m in methods if m not in roster.supervised(methods)]
        table = {}
        for p, m in cols:
            sel = grp[(grp["protocol"] == p) & (grp["metric"] == m)].set_index("method")["mean"]
            means = sel.groupby(level=0).first().reindex(methods)
            if means.notna().sum() == 0:
                continue
            table[(p, m)] = _ranks(means, m)
            for method in methods:
                ranks.append((d, r, method, p, m, means[method], table[(p, m)][method]))
        keys = list(table)
        for i, ka in enumerate(keys):
            for kb in keys[i:]:
                tau, n = _tau(table[ka], table[kb])
                taus.append((d, r, *ka, *kb, tau, n))
    rank_df = pd.DataFrame(
        ranks, columns=["dataset", "direction", "method", "protocol", "metric", "mean", "rank"]
    )
    tau_cols = ["dataset", "direction", "protocol_a", "metric_a", "protocol_b", "metric_b"]
    tau_df = pd.DataFrame(taus, columns=[*tau_cols, "tau", "n_methods"])
    return rank_df, tau_df


def tidy_csv(rank_df: pd.DataFrame, tau_df: pd.DataFrame) -> pd.DataFrame:
    """The table's numbers in one CSV: ``kind`` rank rows, then ``kind`` tau rows (both
    directions of every pair)."""
    swapped = tau_df.rename(
        columns={
            "protocol_a": "protocol_b",
            "metric_a": "metric_b",
            "protocol_b": "protocol_a",
            "metric_b": "metric_a",
        }
    )
    off = (tau_df["protocol_a"] != tau_df["protocol_b"]) | (
        tau_df["metric_a"] != tau_df["metric_b"]
    )
    both = pd.concat([tau_df, swapped[off]], ignore_index=True)
    return pd.concat(
        [rank_df.assign(kind="rank"), both.assign(kind="tau")], ignore_index=True, sort=False
    )


def _tau_lookup(tau_df: pd.DataFrame) -> dict[tuple, tuple[float, int]]:
    out = {}
    for x in tau_df.itertuples():
        a, b = (x.protocol_a, x.metric_a), (x.protocol_b, x.metric_b)
        out[(x.dataset, x.direction, a, b)] = out[(x.dataset, x.direction, b, a)] = (
            x.tau,
            x.n_methods,
        )
    return out


def protocols_table(
    summary: pd.DataFrame, metrics: list[str] | None = None, roster: Roster | None = None
) -> tuple[TableDoc, pd.DataFrame]:
    """The protocol-sensitivity table and its CSV frame: per dataset and direction a rank row
    per method, then a tau row per column (its tau with every column)."""
    roster = roster_or_plain(roster, summary)
    rank_df, tau_df = protocol_rankings(summary, metrics, roster)
    cols = list(dict.fromkeys(zip(rank_df["protocol"], rank_df["metric"], strict=True)))
    header = [
        [("", 3)]
        + [(p, sum(1 for q, _ in cols if q == p)) for p in dict.fromkeys(q for q, _ in cols)],
        [("Dataset", 1), ("Task", 1), ("Method / τ", 1)] + [(metric_label(m), 1) for _, m in cols],
    ]
    rank_of = {
        (x.dataset, x.direction, x.method, (x.protocol, x.metric)): x.rank
        for x in rank_df.itertuples()
    }
    taus = _tau_lookup(tau_df)
    rows: list[list[Cell]] = []
    sections = []
    for (d, r), grp in rank_df.groupby(["dataset", "direction"], sort=False):
        sections.append(len(rows))
        lead = [Cell(dataset_label(d)), Cell(direction_label(r))]
        for method in dict.fromkeys(grp["method"]):
            cells = [Cell(fmt_num(rank_of.get((d, r, method, c), math.nan), 1)) for c in cols]
            rows.append(lead + [Cell(roster.label(method))] + cells)
        for c in cols:
            if (d, r, c, c) not in taus:
                continue
            n = taus[(d, r, c, c)][1]
            name = f"τ {c[0]} {metric_label(c[1])} (n={n})"
            cells = [Cell(fmt_num(taus.get((d, r, c, o), (math.nan, 0))[0], 2)) for o in cols]
            rows.append(lead + [Cell(name)] + cells)
    notes = [
        "Rank of each method (1 = best; ties share their mean rank) by its mean under each "
        "protocol and metric (the protocol's own aggregation). Supervised references (methods "
        "trained on co-registered pairs) are not ranked.",
        "τ rows: Kendall's tau-b between the ranking of the row's column and each column, over "
        "the methods ranked under both (n: methods ranked in the row's column); 1 = the same "
        f"order, −1 = reversed; {MISSING}: fewer than two methods or a constant ranking.",
    ]
    doc = TableDoc(
        "Protocol sensitivity: method ranks under every metric protocol, and Kendall's tau "
        "between the rankings.",
        header,
        rows,
        "lll" + "c" * len(cols),
        notes,
        sections,
    )
    return doc, tidy_csv(rank_df, tau_df)


def tau_heatmap(tau_df: pd.DataFrame, out_prefix: str | Path) -> list[Path]:
    """Heat maps of Kendall's tau, one panel per dataset and direction (PNG and PDF)."""
    from mrbench.reporting.figures import plt, save_figure

    tasks = list(dict.fromkeys(zip(tau_df["dataset"], tau_df["direction"], strict=True)))
    k = tau_df[["protocol_a", "metric_a"]].drop_duplicates().shape[0]
    side = 2.0 + 0.42 * k  # inches per panel: room for the annotated cells
    fig, axes = plt.subplots(
        1, max(1, len(tasks)), figsize=(side * max(1, len(tasks)), side), squeeze=False
    )
    lookup = _tau_lookup(tau_df)
    for ax, (d, r) in zip(axes[0], tasks, strict=False):
        sel = tau_df[(tau_df["dataset"] == d) & (tau_df["direction"] == r)]
        cols = list(dict.fromkeys(zip(sel["protocol_a"], sel["metric_a"], strict=True)))
        mat = np.array([[lookup[(d, r, a, b)][0] for b in cols] for a in cols], dtype=float)
        im = ax.imshow(mat, vmin=-1, vmax=1, cmap="RdBu_r")
        names = [f"{p} {metric_label(m)}" for p, m in cols]
        ax.set_xticks(range(len(cols)), names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(cols)), names, fontsize=7)
        for i in range(len(cols)):
            for j in range(len(cols)):
                text = "–" if np.isnan(mat[i, j]) else f"{mat[i, j]:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=5 if k > 12 else 7)
        n = int(sel["n_methods"].max()) if len(sel) else 0
        ax.set_title(f"{dataset_label(d)} {direction_label(r)} (n={n} methods)", fontsize=9)
    if not tasks:
        axes[0][0].text(0.5, 0.5, "no results", ha="center", va="center")
        axes[0][0].set_axis_off()
    else:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="Kendall's τ")
    return save_figure(fig, out_prefix)
