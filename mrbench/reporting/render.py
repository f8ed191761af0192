"""The table engine: a table as cells under a multi-level header (:class:`TableDoc`), rendered
as Markdown and LaTeX (booktabs, through pandas' Styler) and written beside its CSV, with the
number formats the tables share (``mean ± std``, the best value of a column, ``MISSING``).

The LaTeX needs ``\\usepackage{booktabs}`` and ``\\usepackage{amssymb}`` (for ``\\checkmark``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mrbench.io import atomic_path, write_csv

#: the text of a cell without a value
MISSING = "–"


def _md_text(text: str) -> str:
    """``text`` as one Markdown table cell: a ``|`` (say in a method's label) would start a new
    column and a line break a new row."""
    return " ".join(str(text).splitlines()).replace("|", "\\|")


@dataclass
class Cell:
    """One table cell: its text, bold or not."""

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
        lines.append("| " + " | ".join(_md_text(t) for t in titles) + " |")
        lines.append("|" + "|".join(":--" if a == "l" else "--:" for a in self.align) + "|")
        for row in self.rows:
            cells = [
                f"**{_md_text(c.text)}**" if c.bold and c.text != MISSING else _md_text(c.text)
                for c in row
            ]
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
    "τ": "$\\tau$",
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


def flat_header(*titles: str) -> list[list[tuple[str, int]]]:
    """A one-level header: one column per title."""
    return [[(t, 1) for t in titles]]
