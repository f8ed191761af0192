"""Compile the LaTeX tables inside a minimal document, to prove that they build in a paper.

Used by the tests (and so by CI) on every ``.tex`` table the workflow writes; needs
``pdflatex`` with booktabs and amssymb (Debian: texlive-latex-recommended,
texlive-fonts-recommended).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

DOCUMENT = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs}
\usepackage{amssymb}
\usepackage{graphicx}
\begin{document}
%s
\end{document}
"""


class LatexError(RuntimeError):
    """A table that does not compile; the message names the file and pdflatex's first error."""


def have_pdflatex() -> bool:
    return shutil.which("pdflatex") is not None


def compile_table(tex: str | Path, *, name: str = "table") -> Path:
    """Compile one table (a path, or LaTeX text) inside :data:`DOCUMENT`; return the PDF.

    Raises :class:`LatexError` with pdflatex's first error line (and the table's name).
    """
    source = Path(tex) if isinstance(tex, Path) else None
    text = source.read_text(encoding="utf-8") if source else str(tex)
    name = source.name if source else name
    work = Path(tempfile.mkdtemp(prefix="mrbench-latex-"))
    (work / "doc.tex").write_text(DOCUMENT % text, encoding="utf-8")
    res = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=work,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
    )
    pdf = work / "doc.pdf"
    if res.returncode != 0 or not pdf.exists():
        errors = [ln for ln in res.stdout.splitlines() if ln.startswith("!")]
        first = errors[0] if errors else f"pdflatex exit status {res.returncode}"
        raise LatexError(f"{name}: does not compile ({first})")
    return pdf


def compile_tables(paths: Iterable[str | Path]) -> list[Path]:
    """Compile every table; all failures are reported together."""
    pdfs, failures = [], []
    for path in paths:
        try:
            pdfs.append(compile_table(Path(path)))
        except LatexError as exc:
            failures.append(str(exc))
    if failures:
        raise LatexError("; ".join(failures))
    return pdfs
