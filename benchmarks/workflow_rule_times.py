"""Wall time per rule of a workflow run, from Snakemake's benchmark files.

Every rule with a ``benchmark:`` directive writes one TSV per job (``s``, ``max_rss``, ... as
Snakemake measures them) under ``results/benchmarks/``. This script reads the rules' benchmark
paths from ``workflow/rules/*.smk``, assigns each TSV to its rule (and its method, where the path
has a ``{method}`` wildcard), and sums the jobs' seconds: where the time of a run goes.

    snakemake --cores 2 --configfile config/demo.yaml
    python benchmarks/workflow_rule_times.py [--results results] [--name workflow_rule_times]

Rules without a benchmark file (the report rules, seconds each) are not listed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import ROOT, write_table  # noqa: E402

_RULE = re.compile(r"^rule\s+(\w+)\s*:", re.M)
_BENCH = re.compile(r"^\s+benchmark:\s*\n\s+(f?)\"([^\"]+)\"", re.M)


def benchmark_patterns(rules_dir: Path, results: str) -> dict[str, re.Pattern]:
    """Rule name -> regex of its benchmark path (wildcards as named groups)."""
    patterns: dict[str, re.Pattern] = {}
    for smk in sorted(rules_dir.glob("*.smk")):
        text = smk.read_text()
        starts = [(m.start(), m.group(1)) for m in _RULE.finditer(text)]
        for k, (start, rule) in enumerate(starts):
            end = starts[k + 1][0] if k + 1 < len(starts) else len(text)
            m = _BENCH.search(text, start, end)
            if not m:
                continue
            is_f, raw = m.group(1) == "f", m.group(2)
            if is_f:
                raw = raw.replace("{RESULTS}", results)
                wildcard = re.compile(r"\{\{(\w+)\}\}")
            else:
                wildcard = re.compile(r"\{(\w+)\}")
            regex, pos = "", 0
            for w in wildcard.finditer(raw):
                regex += re.escape(raw[pos : w.start()]) + f"(?P<{w.group(1)}>[^/]+?)"
                pos = w.end()
            regex += re.escape(raw[pos:])
            patterns[rule] = re.compile(f"^{regex}$")
    return patterns


_CONSTRAINT = re.compile(r"^\s+(\w+)\s*=\s*r?\"([^\"]+)\"\s*,?\s*$", re.M)


def literal_constraints(rules_dir: Path) -> dict[str, re.Pattern]:
    """Wildcard constraints written as string literals in ``wildcard_constraints:`` blocks."""
    out: dict[str, re.Pattern] = {}
    for smk in sorted(rules_dir.glob("*.smk")):
        text = smk.read_text()
        for block in re.finditer(r"^wildcard_constraints:\s*\n((?:[ \t]+.*\n?)+)", text, re.M):
            for m in _CONSTRAINT.finditer(block.group(1)):
                out[m.group(1)] = re.compile(f"(?:{m.group(2)})$")
    return out


def match_rule(
    rel: str, patterns: dict[str, re.Pattern], constraints: dict[str, re.Pattern]
) -> tuple[str, dict[str, str]] | None:
    """The rule whose benchmark path gives ``rel``: among the patterns that match with every
    literally constrained wildcard satisfied, the one with the most wildcards (the most
    structured path: ``data/{dataset}/slices_{split}`` over ``data/phantom/{subject}``)."""
    best = None
    for rule, pat in patterns.items():
        m = pat.match(rel)
        if not m:
            continue
        groups = m.groupdict()
        if any(k in constraints and not constraints[k].match(v) for k, v in groups.items()):
            continue
        if best is None or len(groups) > len(best[1]):
            best = (rule, groups)
    return best


def collect(results_dir: Path, rules_dir: Path) -> pd.DataFrame:
    results = results_dir.as_posix().rstrip("/")
    patterns = benchmark_patterns(rules_dir, "results")
    constraints = literal_constraints(rules_dir)
    records = []
    for tsv in sorted(results_dir.glob("benchmarks/**/*.tsv")):
        rel = "results/" + tsv.relative_to(results_dir).as_posix()
        found = match_rule(rel, patterns, constraints)
        if found is None:
            print(f"{rel}: no rule's benchmark path matches; skipped", file=sys.stderr)
            continue
        rule, groups = found
        df = pd.read_csv(tsv, sep="\t")
        for _, row in df.iterrows():
            records.append(
                {
                    "rule": rule,
                    "method": groups.get("method", ""),
                    "s": float(row["s"]),
                    "max_rss_mb": pd.to_numeric(row.get("max_rss"), errors="coerce"),
                }
            )
    if not records:
        raise SystemExit(f"no benchmark files under {results}/benchmarks")
    return pd.DataFrame(records)


def summarise(df: pd.DataFrame) -> list[dict]:
    total = df["s"].sum()
    rows = []
    for rule, g in sorted(df.groupby("rule"), key=lambda kv: -kv[1]["s"].sum()):
        rows.append(
            {
                "rule": rule,
                "method": "(all)",
                "jobs": len(g),
                "total_s": g["s"].sum(),
                "mean_s": g["s"].mean(),
                "max_s": g["s"].max(),
                "share_pct": 100 * g["s"].sum() / total,
                "max_rss_mb": g["max_rss_mb"].max(),
            }
        )
        if g["method"].astype(bool).any():
            for method, gm in sorted(g.groupby("method"), key=lambda kv: -kv[1]["s"].sum()):
                rows.append(
                    {
                        "rule": rule,
                        "method": method,
                        "jobs": len(gm),
                        "total_s": gm["s"].sum(),
                        "mean_s": gm["s"].mean(),
                        "max_s": gm["s"].max(),
                        "share_pct": 100 * gm["s"].sum() / total,
                        "max_rss_mb": gm["max_rss_mb"].max(),
                    }
                )
    rows.append(
        {"rule": "(all rules)", "method": "", "jobs": len(df), "total_s": total, "share_pct": 100.0}
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "results"), help="results folder")
    parser.add_argument("--rules", default=str(ROOT / "workflow" / "rules"))
    parser.add_argument("--name", default="workflow_rule_times", help="CSV name")
    args = parser.parse_args(argv)
    df = collect(Path(args.results), Path(args.rules))
    write_table(
        args.name,
        summarise(df),
        f"Wall time per rule (sum over jobs) from the benchmark files in {args.results}",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
