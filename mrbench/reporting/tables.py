"""The benchmark's tables, each written as CSV (machine-readable), Markdown and LaTeX (booktabs).

Every table is a view of the tidy results table (or, for efficiency, of the training logs), so a
table never holds a number that cannot be traced to the per-slice rows behind it:

- Table 1 in the DisDiff paper's layout: methods as rows; datasets x directions x (PSNR, SSIM %)
  as columns, each ``mean ± std`` across test subjects; the best value of each column in bold.
  Works with whatever methods and datasets are present.
- Table 2, the ablation: the variants present, with a check mark per component each variant's
  plugin reports from its resolved parameters (DisDiff: the disentanglement module, the
  diffusion module and the content discriminator D_c), per dataset and direction.
- The comparison with the numbers the paper reports (``mrbench/data/paper_results.csv``), matched
  through each method's ``paper_row``.
- Significance: paired Wilcoxon tests of the reference method against every other method.

Which methods form Table 1 and Table 2, their order, their names and citations come from the
run's roster (:mod:`mrbench.config.roster`), never from config names.
- Efficiency: parameters, training throughput and peak memory, time and steps to a common
  validation PSNR, inference time per slice.

The LaTeX needs ``\\usepackage{booktabs}`` and ``\\usepackage{amssymb}`` (for ``\\checkmark``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mrbench.config.roster import Roster
from mrbench.evaluation.metrics import PROTOCOLS, higher_is_better
from mrbench.io import atomic_path, write_csv

DATASET_LABELS = {
    "phantom": "Phantom",
    "ixi": "IXI",
    "brats2018": "BraTS",
    "msd_brats": "MSD BraTS",
}
DIRECTION_LABELS = {"t1_to_t2": "T1 → T2", "t2_to_t1": "T2 → T1"}
MISSING = "–"


def dataset_label(name: str) -> str:
    return DATASET_LABELS.get(name, name)


def direction_label(name: str) -> str:
    return DIRECTION_LABELS.get(name, name)


def ordered(names: list[str], order: list[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    known = [n for n in order if n in names]
    return known + [n for n in names if n not in order]


# ---------------------------------------------------------------- rendering
@dataclass
class Cell:
    text: str
    bold: bool = False


@dataclass
class TableDoc:
    """A rendered table: multi-level header (``(text, colspan)`` per level), rows, notes."""

    caption: str
    header: list[list[tuple[str, int]]]
    rows: list[list[Cell]]
    align: str
    notes: list[str] = field(default_factory=list)
    #: row indices before which a rule is drawn (sections such as tasks)
    sections: list[int] = field(default_factory=list)

    @property
    def ncols(self) -> int:
        return sum(span for _, span in self.header[-1])

    def column_titles(self) -> list[str]:
        """One flat title per column (header levels joined), for Markdown and checks."""
        titles = [""] * self.ncols
        for level in self.header:
            col = 0
            for text, span in level:
                for c in range(col, col + span):
                    titles[c] = f"{titles[c]} {text}".strip() if text else titles[c]
                col += span
        return titles

    def markdown(self) -> str:
        lines = [f"**{self.caption}**", ""]
        titles = self.column_titles()
        lines.append("| " + " | ".join(t.replace("|", "\\|") for t in titles) + " |")
        lines.append("|" + "|".join(":--" if a == "l" else "--:" for a in self.align) + "|")
        for row in self.rows:
            cells = [f"**{c.text}**" if c.bold and c.text != MISSING else c.text for c in row]
            lines.append("| " + " | ".join(cells) + " |")
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def latex(self, label: str = "") -> str:
        """LaTeX through pandas' ``Styler.to_latex``: booktabs rules, the header levels as
        multi-index columns (``\\multicolumn`` with ``\\cmidrule`` under each group), the
        bold cells through the Styler and every text escaped, unicode symbols included."""
        body = self._styler().to_latex(
            column_format=self.align,
            hrules=True,
            multicol_align="c",
            caption=latex_escape(self.caption),
            label=label or None,
            position="t",
            position_float="centering",
            environment="table",
        )
        return "% requires \\usepackage{booktabs} and \\usepackage{amssymb}\n" + self._decorate(
            body
        )

    def _frame(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The escaped cell texts under multi-index columns, and the bold mask."""
        levels = []
        for level in self.header:
            titles: list[str] = []
            for text, span in level:
                titles += [latex_escape(text)] * span
            levels.append(titles)
        columns = pd.MultiIndex.from_arrays(levels) if len(levels) > 1 else pd.Index(levels[0])
        text = [[latex_escape(c.text) for c in row] for row in self.rows]
        bold = [[c.bold and c.text != MISSING for c in row] for row in self.rows]
        return (
            pd.DataFrame(text, columns=columns, dtype=object),
            pd.DataFrame(bold, columns=columns, dtype=bool),
        )

    def _styler(self) -> Any:
        frame, bold = self._frame()
        if frame.columns.is_unique:
            styler = frame.style.apply(
                lambda df: (
                    bold.set_axis(df.index)
                    .set_axis(df.columns, axis=1)
                    .map(lambda b: "textbf:--rwrap;" if b else "")
                ),
                axis=None,
            )
        else:  # the Styler styles unique columns only: bold by wrapping the text instead
            wrapped = frame.where(~bold.to_numpy(), "\\textbf{" + frame.astype(str) + "}")
            styler = wrapped.style
        return styler.hide(axis="index")

    def _decorate(self, body: str) -> str:
        """What the Styler does not draw: ``\\cmidrule`` under grouped header cells, rules
        between row sections, and the notes under the tabular."""
        lines = body.splitlines()
        top = lines.index("\\toprule")
        mid = lines.index("\\midrule")
        header_lines = list(range(top + 1, mid))
        out = lines[: top + 1]
        for n, idx in enumerate(header_lines):
            out.append(lines[idx])
            if n < len(self.header) - 1:
                rules, col = [], 1
                for text, span in self.header[n]:
                    if span > 1 and text:
                        rules.append(f"\\cmidrule(lr){{{col}-{col + span - 1}}}")
                    col += span
                if rules:
                    out.append(" ".join(rules))
        out.append("\\midrule")
        row = 0
        for line in lines[mid + 1 :]:
            if line == "\\bottomrule":
                out.append(line)
                continue
            if line.endswith("\\\\") and line != "\\bottomrule":
                if row in self.sections and row > 0:
                    out.append("\\midrule")
                row += 1
            if line == "\\end{table}" and self.notes:
                out.append("\\par\\smallskip{\\footnotesize")
                out += [latex_escape(n) + "\\\\" for n in self.notes]
                out.append("}")
            out.append(line)
        return "\n".join(out) + "\n"


_LATEX_TEXT = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "#": "\\#",
    "_": "\\_",
    "$": "\\$",
    "{": "\\{",
    "}": "\\}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
}
_LATEX_SYMBOLS = {
    "±": "$\\pm$",
    "→": "$\\rightarrow$",
    "✓": "\\checkmark",
    "×": "$\\times$",
    "–": "--",
    "≥": "$\\geq$",
    "≤": "$\\leq$",
    "↔": "$\\leftrightarrow$",
    "←": "$\\leftarrow$",
    "≈": "$\\approx$",
    "∞": "$\\infty$",
    "—": "---",
    "−": "$-$",
    "…": "\\ldots{}",
    "·": "$\\cdot$",
    "°": "$^\\circ$",
    "²": "$^2$",
    "µ": "$\\mu$",
    "μ": "$\\mu$",
    "α": "$\\alpha$",
    "σ": "$\\sigma$",
    "Δ": "$\\Delta$",
    "‰": "\\textperthousand{}",
    "“": "``",
    "”": "''",
    "‘": "`",
    "’": "'",
    "\u00a0": "~",
}


def latex_escape(text: str) -> str:
    """LaTeX for plain text: the special characters escaped and the symbols the tables use
    (arrows, comparisons, ±, check marks, Greek letters, ...) as commands, so that pdflatex
    compiles the result without unicode support; other non-ASCII letters (accented names) are
    left to LaTeX's UTF-8 input."""
    out = []
    for ch in str(text):
        out.append(_LATEX_TEXT.get(ch) or _LATEX_SYMBOLS.get(ch) or ch)
    return "".join(out)


def write_table(doc: TableDoc, csv_df: pd.DataFrame, prefix: str | Path) -> list[Path]:
    """Write ``prefix``.csv (the numbers), ``.md`` and ``.tex`` (the rendered layout)."""
    prefix = Path(prefix)
    paths = [write_csv(csv_df, prefix.with_suffix(".csv"))]
    for ext, text in ((".md", doc.markdown()), (".tex", doc.latex(f"tab:{prefix.name}"))):
        path = prefix.with_suffix(ext)
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def fmt_num(x: float, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.{digits}f}"


def fmt_pm(mean: float, std: float, digits: int = 2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return MISSING
    if math.isinf(mean) or std is None or math.isnan(std):
        return fmt_num(mean, digits)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def best_mask(values: list[float], higher: bool) -> list[bool]:
    """Which entries are the best (ties all marked); NaN never is."""
    arr = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if np.all(np.isnan(arr)):
        return [False] * len(values)
    best = np.nanmax(arr) if higher else np.nanmin(arr)
    return [bool(v == best) for v in arr]


def _labels_from(summary: pd.DataFrame) -> dict[str, str]:
    if "label" in summary:
        return dict(zip(summary["method"], summary["label"], strict=False))
    return {}


def _roster(roster: Roster | None, frame: pd.DataFrame) -> Roster:
    """The given roster, or a plain one of the methods in ``frame`` (labels from its column)."""
    if roster is not None:
        return roster
    names = list(frame["method"]) if "method" in frame else []
    return Roster.plain(names, _labels_from(frame))


def row_label(roster: Roster, name: str, labels: dict[str, str] | None = None) -> str:
    """A method's row name: its label, with a dagger for reconstructions from the paper."""
    entry = roster.entries.get(name)
    label = (labels or {}).get(name) or roster.label(name)
    return f"{label} †" if entry and entry.reconstruction else label


def methods_note(roster: Roster, names: list[str]) -> str | None:
    """One note naming each row's config name and citation (and the dagger's meaning)."""
    parts = []
    for n in names:
        entry = roster.entries.get(n)
        if entry is None or not entry.plugin:
            continue
        text = f"{entry.label} [{n}]"
        parts.append(f"{text}: {entry.citation}" if entry.citation else text)
    if not parts:
        return None
    note = "Methods [config name]: " + "; ".join(parts) + "."
    if any(roster.entries[n].reconstruction for n in names if n in roster.entries):
        note += " †: reconstructed from the paper (no official code)."
    return note


def _protocol_note(protocol: str) -> str:
    p = PROTOCOLS.get(protocol)
    return f"Protocol {protocol}: {p.description}." if p else f"Protocol {protocol}."


def _spread_note(sel: pd.DataFrame) -> str:
    if sel.empty:
        return "No results."
    subj = sel["n_subjects"]
    seeds = sel["n_seeds"].max()
    agg = sel["aggregation"].iloc[0]
    over = "test slices" if agg == "slice" else "test subjects (each the mean of its slices)"
    n = f"{subj.min()}" if subj.min() == subj.max() else f"{subj.min()}-{subj.max()}"
    text = f"Mean ± std (population) across {over}; n = {n} subjects"
    text += f", {sel['n_slices'].min()}-{sel['n_slices'].max()} slices"
    if seeds > 1:
        text += f"; {seeds} seeds (subject values averaged over seeds; seed spread in the CSV)"
    return text + "."


def _inf_note(sel: pd.DataFrame) -> str | None:
    n_inf = int(sel.get("n_infinite", pd.Series(dtype=int)).sum())
    if n_inf:
        return (
            f"{n_inf} infinite PSNR value(s) (exact predictions) are excluded from means and stds "
            "(counted in the CSV column n_infinite)."
        )
    return None


# ---------------------------------------------------------------- Table 1
def table1(
    summary: pd.DataFrame,
    protocol: str = "max01",
    psnr: str = "psnr",
    ssim: str = "ssim",
    roster: Roster | None = None,
    labels: dict[str, str] | None = None,
) -> tuple[TableDoc, pd.DataFrame]:
    """Table 1 of the paper: methods x (dataset, direction, PSNR/SSIM).

    Rows: the roster's Table 1 methods present in ``summary``, in roster order (without a
    roster: every method, in order of appearance).
    """
    roster = _roster(roster, summary)
    labels = {**_labels_from(summary), **roster.labels(), **(labels or {})}
    sel = summary[(summary["protocol"] == protocol) & summary["metric"].isin([psnr, ssim])]
    sel = sel[sel["method"].isin(roster.table1)]
    methods = [m for m in roster.table1 if m in set(sel["method"])]
    datasets = list(dict.fromkeys(sel["dataset"]))
    dirs = ordered(list(sel["direction"]), list(DIRECTION_LABELS))
    cols = [(d, r) for d in datasets for r in dirs]
    idx = sel.set_index(["method", "dataset", "direction", "metric"])

    def get(m, d, r, metric, key):
        try:
            return float(idx.loc[(m, d, r, metric), key])
        except KeyError:
            return math.nan

    records = []
    for m in methods:
        for d, r in cols:
            rec = {"method": m, "label": labels.get(m, m), "dataset": d, "direction": r}
            for short, metric in (("psnr", psnr), ("ssim", ssim)):
                rec[f"{short}_mean"] = get(m, d, r, metric, "mean")
                rec[f"{short}_std"] = get(m, d, r, metric, "std")
                rec[f"{short}_seed_std"] = get(m, d, r, metric, "seed_std")
                rec[f"{short}_n_infinite"] = get(m, d, r, metric, "n_infinite")
            rec["n_subjects"] = get(m, d, r, psnr, "n_subjects")
            rec["n_slices"] = get(m, d, r, psnr, "n_slices")
            rec["n_seeds"] = get(m, d, r, psnr, "n_seeds")
            rec.update(protocol=protocol, psnr_metric=psnr, ssim_metric=ssim)
            records.append(rec)
    df = pd.DataFrame(records)
    # best per column
    best: dict[tuple[str, str, str], list[bool]] = {}
    for d, r in cols:
        for short, metric in (("psnr", psnr), ("ssim", ssim)):
            vals = [get(m, d, r, metric, "mean") for m in methods]
            best[(d, r, short)] = best_mask(vals, higher_is_better(metric))
    if not df.empty:
        df["psnr_best"] = [
            best[(row.dataset, row.direction, "psnr")][methods.index(row.method)]
            for row in df.itertuples()
        ]
        df["ssim_best"] = [
            best[(row.dataset, row.direction, "ssim")][methods.index(row.method)]
            for row in df.itertuples()
        ]
    header = [
        [("Method", 1)] + [(dataset_label(d), 2 * len(dirs)) for d in datasets],
        [("", 1)] + [(direction_label(r), 2) for _, r in cols],
        [("", 1)] + [(h, 1) for _ in cols for h in ("PSNR (dB)", "SSIM (%)")],
    ]
    rows = []
    for i, m in enumerate(methods):
        row = [Cell(row_label(roster, m, labels))]
        for d, r in cols:
            for short, metric in (("psnr", psnr), ("ssim", ssim)):
                text = fmt_pm(get(m, d, r, metric, "mean"), get(m, d, r, metric, "std"))
                row.append(Cell(text, best[(d, r, short)][i]))
        rows.append(row)
    notes = [_protocol_note(protocol), _spread_note(sel), "Bold: best in the column."]
    if (n := _inf_note(sel)) is not None:
        notes.append(n)
    if psnr != "psnr" or ssim != "ssim":
        notes.append(f"Metrics: {psnr} and {ssim}.")
    if (n := methods_note(roster, methods)) is not None:
        notes.append(n)
    doc = TableDoc(
        "Table 1. T1w ↔ T2w translation: PSNR (dB) and SSIM (%) on the test sets.",
        header,
        rows,
        "l" + "c" * (2 * len(cols)),
        notes,
    )
    return doc, df


# ---------------------------------------------------------------- Table 2
def table2(
    summary: pd.DataFrame,
    protocol: str = "max01",
    psnr: str = "psnr",
    ssim: str = "ssim",
    roster: Roster | None = None,
) -> tuple[TableDoc, pd.DataFrame]:
    """Table 2 of the paper (ablation): the roster's ablation methods present, one check mark
    column per component their plugins report from the resolved parameters."""
    roster = roster if roster is not None else Roster.plain([])
    sel = summary[
        (summary["protocol"] == protocol)
        & summary["metric"].isin([psnr, ssim])
        & summary["method"].isin(roster.ablation)
    ]
    idx = sel.set_index(["method", "dataset", "direction", "metric"])
    variants = [v for v in roster.ablation if v in set(sel["method"])]
    parts = roster.component_names(variants)
    header = [
        [("Task", 1)] + [(c, 1) for c in parts] + [("PSNR (dB)", 1), ("SSIM (%)", 1)],
    ]

    def mark(v: str, c: str) -> str:
        flags = roster.entries[v].components
        return MISSING if c not in flags else ("✓" if flags[c] else "×")

    rows, sections, records = [], [], []
    for d in dict.fromkeys(sel["dataset"]):
        for r in ordered(list(sel.loc[sel["dataset"] == d, "direction"]), list(DIRECTION_LABELS)):
            present = [v for v in variants if (v, d, r, psnr) in idx.index]
            if not present:
                continue
            vals = {
                (v, metric, key): float(idx.loc[(v, d, r, metric), key])
                if (v, d, r, metric) in idx.index
                else math.nan
                for v in present
                for metric in (psnr, ssim)
                for key in ("mean", "std")
            }
            bp = best_mask([vals[(v, psnr, "mean")] for v in present], True)
            bs = best_mask([vals[(v, ssim, "mean")] for v in present], True)
            sections.append(len(rows))
            task = f"{dataset_label(d)} {direction_label(r)}"
            for k, v in enumerate(present):
                rows.append(
                    [Cell(task if k == 0 else "")]
                    + [Cell(mark(v, c)) for c in parts]
                    + [
                        Cell(fmt_pm(vals[(v, psnr, "mean")], vals[(v, psnr, "std")]), bp[k]),
                        Cell(fmt_pm(vals[(v, ssim, "mean")], vals[(v, ssim, "std")]), bs[k]),
                    ]
                )
                records.append(
                    {
                        "dataset": d,
                        "direction": r,
                        "method": v,
                        "label": roster.label(v),
                        **{c: roster.entries[v].components.get(c) for c in parts},
                        "psnr_mean": vals[(v, psnr, "mean")],
                        "psnr_std": vals[(v, psnr, "std")],
                        "ssim_mean": vals[(v, ssim, "mean")],
                        "ssim_std": vals[(v, ssim, "std")],
                        "psnr_best": bp[k],
                        "ssim_best": bs[k],
                        "protocol": protocol,
                    }
                )
    notes = [_protocol_note(protocol)]
    if rows:
        notes += [_spread_note(sel), "Bold: best within the task."]
        missing = [v for v in roster.ablation if v not in variants]
        if missing:
            notes.append(f"Variants not in this run: {', '.join(missing)}.")
        notes.append(
            "Rows in task order: "
            + ", ".join(f"{roster.label(v)} [{v}]" for v in variants)
            + "; check marks from each variant's resolved parameters."
        )
    else:
        notes.append(
            "No ablation variants in this run (roster: "
            f"{', '.join(roster.ablation) or 'none'}); the table is empty."
        )
    whose = roster.label(roster.ablation[-1]) if roster.ablation else "the method"
    doc = TableDoc(
        f"Table 2. Ablation of the {whose} modules.",
        header,
        rows,
        "l" + "c" * (len(parts) + 2),
        notes,
        sections,
    )
    cols = ["dataset", "direction", "method", "label", *parts]
    cols += ["psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "psnr_best", "ssim_best", "protocol"]
    return doc, pd.DataFrame(records, columns=cols)


# ---------------------------------------------------------------- paper comparison
def paper_results() -> pd.DataFrame:
    """The numbers the DisDiff paper reports (its Tables 1 and 2), as committed in the package."""
    with resources.files("mrbench").joinpath("data/paper_results.csv").open() as f:
        return pd.read_csv(f, keep_default_na=False, na_values=[""])


def paper_comparison(
    summary: pd.DataFrame,
    roster: Roster | None = None,
    protocol: str = "max01",
    psnr: str = "psnr",
    ssim: str = "ssim",
) -> tuple[TableDoc, pd.DataFrame]:
    """Reproduced vs reported values for every paper entry a configured method reproduces: the
    entry's ``paper_row`` names the row (column ``method`` of the paper's numbers)."""
    rows_of = (roster or Roster.plain([])).paper_rows()
    paper = paper_results()
    paper = paper[paper["method"].isin(list(rows_of))]
    metric_map = {"psnr": psnr, "ssim": ssim}
    sel = summary[summary["protocol"] == protocol].set_index(
        ["method", "dataset", "direction", "metric"]
    )
    records = []
    for row in paper.itertuples():
        name = rows_of[row.method]
        key = (name, row.config_dataset, row.direction, metric_map[row.metric])
        rep_mean = float(sel.loc[key, "mean"]) if key in sel.index else math.nan
        rep_std = float(sel.loc[key, "std"]) if key in sel.index else math.nan
        records.append(
            {
                "table": int(row.table),
                "paper_method": row.method,
                "method": name,
                "dataset": row.config_dataset,
                "direction": row.direction,
                "metric": row.metric,
                "unit": row.unit,
                "reproduced_mean": rep_mean,
                "reproduced_std": rep_std,
                "reported_mean": float(row.mean),
                "reported_std": float(row.std),
                "difference": rep_mean - float(row.mean),
                "protocol": protocol,
                "note": note if isinstance(note := getattr(row, "note", ""), str) else "",
            }
        )
    columns = ["table", "paper_method", "method", "dataset", "direction", "metric", "unit"]
    columns += ["reproduced_mean", "reproduced_std", "reported_mean", "reported_std"]
    df = pd.DataFrame(records, columns=[*columns, "difference", "protocol", "note"])
    header = [
        [
            ("Table", 1),
            ("Method", 1),
            ("Dataset", 1),
            ("Task", 1),
            ("Metric", 1),
            ("Reproduced", 1),
            ("Reported", 1),
            ("Difference", 1),
        ]
    ]
    rows = []
    for rec in records:
        rows.append(
            [
                Cell(str(rec["table"])),
                Cell(rec["paper_method"]),
                Cell(dataset_label(rec["dataset"])),
                Cell(direction_label(rec["direction"])),
                Cell(f"{rec['metric'].upper()} ({rec['unit']})"),
                Cell(fmt_pm(rec["reproduced_mean"], rec["reproduced_std"])),
                Cell(fmt_pm(rec["reported_mean"], rec["reported_std"])),
                Cell(MISSING if math.isnan(rec["difference"]) else f"{rec['difference']:+.2f}"),
            ]
        )
    present = set(summary["dataset"]) if not summary.empty else set()
    notes = [
        _protocol_note(protocol),
        "Reported: the DisDiff paper (MICCAI 2025), Tables 1 and 2; its protocol "
        "(normalisation, mask, averaging) is not stated, so differences mix method and "
        "protocol effects.",
        "Difference = reproduced - reported.",
        "Rows: the configured methods whose entry names a paper_row"
        + (f" ({', '.join(f'{r} = {n}' for r, n in rows_of.items())})." if rows_of else "; none."),
    ]
    notes += provenance_notes(records)
    others = sorted(present - set(paper["config_dataset"]))
    if others:
        notes.append(
            f"Datasets without published numbers in the paper: {', '.join(others)} "
            "(no comparison possible)."
        )
    doc = TableDoc(
        "Reproduced vs reported results of the DisDiff paper.", header, rows, "lllllccc", notes
    )
    return doc, df


def provenance_notes(records: list[dict[str, Any]]) -> list[str]:
    """Footnotes for reported numbers whose provenance the paper does not state (the ``note``
    column of ``paper_results.csv``), e.g. Table 2 rows copied from Table 1."""
    by_note: dict[str, list[str]] = {}
    for rec in records:
        if rec.get("note"):
            by_note.setdefault(rec["note"], []).append(
                f"Table {rec['table']} {rec['paper_method']}"
            )
    return [
        f"Reported {', '.join(dict.fromkeys(rows))}: {note}, value for value."
        for note, rows in by_note.items()
    ]


# ---------------------------------------------------------------- significance
def significance_table(
    tests: pd.DataFrame,
    protocol: str,
    metrics: list[str],
    reference: str | None = None,
    roster: Roster | None = None,
) -> TableDoc:
    """The Wilcoxon tests of :func:`mrbench.evaluation.stats.wilcoxon_table` as a table;
    ``reference``
    defaults to the one the tests were made against."""
    if reference is None:
        reference = str(tests["reference"].iloc[0]) if len(tests) else "(none)"
    roster = _roster(roster, tests)
    ref_label = roster.label(reference)
    sel = tests[(tests["protocol"] == protocol) & tests["metric"].isin(metrics)]
    header = [
        [
            ("Dataset", 1),
            ("Task", 1),
            ("Metric", 1),
            ("Method", 1),
            ("n", 1),
            (ref_label, 1),
            ("Method mean", 1),
            ("Median diff.", 1),
            ("W", 1),
            ("p", 1),
            ("p (Holm)", 1),
            ("Verdict", 1),
        ]
    ]
    rows = []
    for r in sel.itertuples():
        p_holm = getattr(r, "p_holm", math.nan)
        significant = bool(getattr(r, "significant_holm", r.significant))
        if r.underpowered:
            verdict = "n too small"
        elif significant:
            verdict = "significant"
        elif isinstance(r.p_value, float) and math.isnan(r.p_value):
            verdict = "not testable"
        else:
            verdict = "not significant"
        rows.append(
            [
                Cell(dataset_label(r.dataset)),
                Cell(direction_label(r.direction)),
                Cell(r.metric),
                Cell(roster.label(r.method)),
                Cell(str(r.n)),
                Cell(fmt_num(r.mean_reference)),
                Cell(fmt_num(r.mean_method)),
                Cell(fmt_num(r.median_difference)),
                Cell(fmt_num(r.statistic, 1)),
                Cell(fmt_num(r.p_value, 4)),
                Cell(fmt_num(p_holm, 4)),
                Cell(verdict, significant),
            ]
        )
    notes = [
        _protocol_note(protocol),
        f"Paired two-sided Wilcoxon signed-rank test of {ref_label} [{reference}] against each "
        "method on "
        "per-subject means (scipy.stats.wilcoxon).",
        "With n pairs the smallest possible p is 2/2^n: for n ≤ 5, p < 0.05 cannot be reached "
        "and the row says 'n too small'.",
        "p (Holm): Holm-Bonferroni adjusted over the methods compared on the same dataset, task "
        "and metric (statsmodels); the verdict uses it.",
    ]
    if sel.empty:
        notes.append(f"No tests: the reference method {reference} is not in the results.")
    if (n := methods_note(roster, [reference, *dict.fromkeys(sel["method"])])) is not None:
        notes.append(n)
    return TableDoc(
        f"Significance of {ref_label} against the other methods.",
        header,
        rows,
        "llll" + "c" * 8,
        notes,
    )


# ---------------------------------------------------------------- efficiency
LOG_NON_LOSS = {"step", "lr", "sec_per_step", "peak_mem_mb", "seconds_elapsed"}


def read_csv_or_empty(path: Path) -> pd.DataFrame:
    """A CSV as a DataFrame, or an empty one when the file is missing or empty (a run that
    logged nothing yet)."""
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


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

    from mrbench.checkpoint import read_model

    model_path = Path(model_path)
    run_dir = model_path.parent
    record = read_model(model_path)
    # parameters: tensors of the state dict that are parameters of the built networks
    from mrbench.checkpoint import load_model

    model = load_model(model_path, "cpu")
    n_params = int(sum(p.numel() for p in model.parameters()))
    per_net = model.num_parameters()
    del model
    facts: dict[str, Any] = {
        "dataset": dataset,
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


def translator_psnr(val_log: pd.DataFrame) -> dict[str, float]:
    """Collapse check of methods with translators (``validation_outputs``): at the last
    validation, the translator's PSNR against its own input and against the target (NaN for
    methods without one). Near-identity translators score high against the input."""
    out = {}
    for ref in ("input", "target"):
        col = f"psnr_translator_vs_{ref}"
        values = pd.to_numeric(val_log[col], errors="coerce") if col in val_log else pd.Series()
        out[f"translator_psnr_vs_{ref}"] = float(values.iloc[-1]) if len(values) else math.nan
    return out


def time_to_threshold(val_log: pd.DataFrame, threshold: float) -> tuple[float, float]:
    """(step, seconds) of the first validation reaching ``threshold`` dB; NaN if never."""
    if val_log.empty or "psnr" not in val_log or not math.isfinite(threshold):
        return math.nan, math.nan
    psnr = pd.to_numeric(val_log["psnr"], errors="coerce")
    hit = val_log[psnr >= threshold]
    if hit.empty:
        return math.nan, math.nan
    first = hit.iloc[0]
    return float(first["step"]), float(first.get("seconds_elapsed", math.nan))


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
    records = []
    thresholds: dict[str, float] = {}
    for d in dict.fromkeys(f["dataset"] for f in facts):
        if threshold_psnr is not None:
            thresholds[d] = float(threshold_psnr)
            continue
        trained = [
            f
            for f in facts
            if f["dataset"] == d and f["train_steps"] > 0 and math.isfinite(f["best_val_psnr"])
        ]
        in_pair = [f for f in trained if f["method"] in pair]
        if pair and {f["method"] for f in in_pair} == set(pair):
            trained = in_pair
        bests = [f["best_val_psnr"] for f in trained]
        thresholds[d] = float(min(bests)) if bests else math.nan
    for f in facts:
        step, secs = (math.nan, math.nan)
        if f["train_steps"] > 0:
            step, secs = time_to_threshold(f["_val_log"], thresholds[f["dataset"]])
        rec = {k: v for k, v in f.items() if not k.startswith("_")}
        rec.update(
            threshold_psnr=thresholds[f["dataset"]],
            steps_to_threshold=step,
            seconds_to_threshold=secs,
        )
        records.append(rec)
    df = pd.DataFrame(records)
    for col in ("sampling_steps", "translator_psnr_vs_input", "translator_psnr_vs_target"):
        if not df.empty and col not in df:
            df[col] = math.nan  # facts gathered before the column existed
    header = [
        [
            ("Dataset", 1),
            ("Method", 1),
            ("Params (M)", 1),
            ("Train img/s", 1),
            ("Peak mem (MB)", 1),
            ("Steps to thr.", 1),
            ("Time to thr. (s)", 1),
            ("Inference (s/slice)", 1),
            ("Translator PSNR vs input", 1),
            ("Translator PSNR vs target", 1),
            ("Sampling steps", 1),
        ]
    ]
    rows = []
    if not df.empty:
        agg = (
            df.groupby(["dataset", "method"], sort=False)
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
        for r in agg.sort_values(["dataset", "_o"], kind="stable").itertuples():
            rows.append(
                [
                    Cell(dataset_label(r.dataset)),
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
    thr = ", ".join(f"{dataset_label(d)} {fmt_num(t)} dB" for d, t in thresholds.items())
    devices = sorted({f["device"] for f in facts if f.get("device")})
    notes = [
        f"Validation PSNR threshold: {thr or MISSING}"
        + (
            " (set in the config)"
            if threshold_psnr is not None
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
    doc = TableDoc("Efficiency of the methods.", header, rows, "ll" + "c" * 9, notes)
    return doc, df


def fidelity_table(df: pd.DataFrame, roster: Roster | None = None) -> TableDoc:
    """FID/KID per task; rows in roster order, named by the roster's labels."""
    roster = _roster(roster, df)
    header = [
        [
            ("Dataset", 1),
            ("Method", 1),
            ("Task", 1),
            ("FID", 1),
            ("KID (×100)", 1),
            ("n", 1),
            ("Features", 1),
        ]
    ]
    rows = []
    if not df.empty:
        agg = (
            df.groupby(["dataset", "method", "direction", "feature_extractor"], sort=False)
            .agg(fid=("fid", "mean"), kid=("kid_mean", "mean"), n=("n_pred", "mean"))
            .reset_index()
        )
        rank = {m: i for i, m in enumerate(roster.ordered(list(agg["method"])))}
        agg = agg.sort_values("method", key=lambda m: m.map(rank), kind="stable")
        for (d, r), grp in agg.groupby(["dataset", "direction"], sort=False):
            bf = best_mask(list(grp["fid"]), False)
            bk = best_mask(list(grp["kid"]), False)
            for k, x in enumerate(grp.itertuples()):
                rows.append(
                    [
                        Cell(dataset_label(d)),
                        Cell(roster.label(x.method)),
                        Cell(direction_label(r)),
                        Cell(fmt_num(x.fid, 3), bf[k]),
                        Cell(fmt_num(100 * x.kid, 3), bk[k]),
                        Cell(fmt_num(x.n, 0)),
                        Cell(x.feature_extractor),
                    ]
                )
    notes = [
        "FID and KID (torch-fidelity) of the translated test slices against the real target "
        "slices; lower is better; bold: best per task.",
    ]
    if not df.empty and not df["inception"].astype(bool).all():
        notes.append(
            "Rows whose features are not inception-v3-compat are NOT comparable with published "
            "FID/KID values (offline random-feature extractor)."
        )
    return TableDoc(
        "FID and KID of the translated test slices.", header, rows, "lll" + "c" * 4, notes
    )


# ---------------------------------------------------------------- methods
def methods_table(roster: Roster) -> tuple[TableDoc, pd.DataFrame]:
    """Every configured method as the tables name it: label, config name, plugin, family,
    citation and its roles in this run (Table 1, ablation, reference, efficiency pair); the
    notes list each plugin's stated deviations from its official recipe."""
    records = []
    for n in roster.order:
        e = roster.entries[n]
        records.append(
            {
                "method": n,
                "label": e.label,
                "plugin": e.plugin,
                "family": e.family,
                "citation": e.citation,
                "reconstruction": e.reconstruction,
                "trainable": e.trainable,
                "table1": n in roster.table1,
                "ablation": n in roster.ablation,
                "components": json.dumps(e.components),
                "capabilities": " ".join(e.capabilities),
                "paper_row": e.paper_row or "",
                "reference": n == roster.reference,
                "efficiency_pair": n in roster.efficiency_pair,
            }
        )
    df = pd.DataFrame(records, columns=[*(records[0] if records else ["method"])])
    titles = ["Method", "Config name", "Family", "Citation", "Trained", "Table 1", "Ablation"]
    header = [[(t, 1) for t in titles + ["Paper row"]]]

    def tick(flag: bool) -> str:
        return "✓" if flag else "×"

    rows = [
        [
            Cell(row_label(roster, r["method"])),
            Cell(r["method"]),
            Cell(r["family"]),
            Cell(r["citation"] or MISSING),
            Cell(tick(r["trainable"])),
            Cell(tick(r["table1"])),
            Cell(tick(r["ablation"])),
            Cell(r["paper_row"] or MISSING),
        ]
        for r in records
    ]
    notes = []
    if roster.reference:
        notes.append(f"Significance reference: {roster.label(roster.reference)}.")
    if roster.efficiency_pair:
        pair = " and ".join(map(roster.label, roster.efficiency_pair))
        notes.append(f"Efficiency threshold from the convergence of {pair}.")
    if any(roster.entries[n].reconstruction for n in roster.order):
        notes.append("†: reconstructed from the paper (no official code).")
    seen: set[str] = set()
    for n in roster.order:
        e = roster.entries[n]
        if e.plugin not in seen:  # variants of one plugin share its deviations
            seen.add(e.plugin)
            notes += [f"{e.label} ({e.plugin}): {d}" for d in e.deviations]
    doc = TableDoc("Methods of this run.", header, rows, "l" * 4 + "c" * 3 + "l", notes)
    return doc, df
