"""The significance table: paired Wilcoxon tests of the reference method against every other
method (:func:`mrbench.evaluation.stats.wilcoxon_table`), with Holm-adjusted p-values.

The supervised references (plugins with the ``paired`` trait, trained on co-registered pairs) are
not tested unless the config's ``evaluation.test_supervised`` asks: they are a ceiling beside the
unsupervised methods, not a competitor (:func:`supervised_left_out`)."""

from __future__ import annotations

import math

import pandas as pd

from mrbench.config.roster import Roster
from mrbench.reporting.labels import (
    dataset_label,
    default_pair_only,
    direction_label,
    roster_or_plain,
)
from mrbench.reporting.notes import methods_note, protocol_note
from mrbench.reporting.render import Cell, TableDoc, flat_header, fmt_num


def supervised_left_out(roster: Roster | None, methods: list[str], reference: str) -> list[str]:
    """The supervised references among ``methods`` that the tests leave out: all but the
    reference itself, none when the roster's ``test_supervised`` is set (or without a roster)."""
    if roster is None or roster.test_supervised:
        return []
    return [m for m in roster.supervised(methods) if m != reference]


def significance_table(
    tests: pd.DataFrame,
    protocol: str,
    metrics: list[str],
    reference: str | None = None,
    roster: Roster | None = None,
    left_out: list[str] | None = None,
) -> TableDoc:
    """The Wilcoxon tests of :func:`mrbench.evaluation.stats.wilcoxon_table` as a table;
    ``reference`` defaults to the one the tests were made against."""
    if reference is None:
        reference = str(tests["reference"].iloc[0]) if len(tests) else "(none)"
    roster = roster_or_plain(roster, tests)
    ref_label = roster.label(reference)
    tests = default_pair_only(tests)  # the columns of Table 1: T1w/T2w only
    sel = tests[(tests["protocol"] == protocol) & tests["metric"].isin(metrics)]
    header = flat_header(
        *("Dataset", "Task", "Metric", "Method", "n", ref_label, "Method mean", "Median diff."),
        *("W", "p", "p (Holm)", "Verdict"),
    )
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
        protocol_note(protocol),
        f"Paired two-sided Wilcoxon signed-rank test of {ref_label} [{reference}] against each "
        "method on "
        "per-subject means (scipy.stats.wilcoxon).",
        "With n pairs the smallest possible p is 2/2^n: for n ≤ 5, p < 0.05 cannot be reached "
        "and the row says 'n too small'.",
        "p (Holm): Holm-Bonferroni adjusted over the methods compared on the same dataset, task "
        "and metric (statsmodels); the verdict uses it.",
    ]
    if left_out:
        notes.append(
            "Not tested: the supervised reference(s) "
            f"{', '.join(roster.label(m) for m in left_out)} (trained on co-registered pairs; "
            "evaluation.test_supervised includes them)."
        )
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
