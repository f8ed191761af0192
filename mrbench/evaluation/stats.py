"""Aggregation and significance tests on the tidy results table.

Slices of one subject are not independent samples, so the headline statistics are computed on
per-subject means: first the mean over a subject's slices, then mean +- std across subjects.
Mean +- std across all slices is reported too, because several papers aggregate that way.

Conventions, applied everywhere:

- Infinite values (PSNR of a slice predicted exactly) are left out of every mean and std and
  counted: ``n_infinite`` (values) and ``n_subjects_infinite`` (subjects whose every slice was
  infinite, so that their mean is ``inf``). NaN values (a metric not defined for an input, e.g.
  Gaussian SSIM on a volume thinner than its window) are left out likewise.
- Standard deviations are population standard deviations (``ddof=0``, numpy's default, as in
  the evaluation code the compared papers published).
- Several seeds of one method: a subject's value is the mean of its per-seed means; the spread
  across seeds is the std of the per-seed means across subjects (``seed_std``, ``n_seeds``).
- Significance: paired two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``) of the
  reference method (config ``evaluation.reference_method``) against every other method on
  per-subject means. With n pairs and no ties the smallest attainable two-sided p-value is
  ``2 / 2**n``; tests where it is not below alpha (n <= 5 for alpha 0.05) are flagged
  ``underpowered`` and never called significant.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from mrbench.evaluation.metrics import PROTOCOLS

GROUP = ["dataset", "method", "direction", "protocol", "metric"]
SUBJECT_KEYS = ["dataset", "method", "seed", "direction", "protocol", "metric", "subject"]


def _finite_mean(values: pd.Series) -> float:
    v = values.to_numpy(dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size:
        return float(finite.mean())
    if np.isinf(v).any():
        return math.inf if (v[np.isinf(v)] > 0).all() else math.nan
    return math.nan


def _finite(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v[np.isfinite(v)]


def subject_means(tidy: pd.DataFrame) -> pd.DataFrame:
    """Mean over each subject's slices (finite values), with slice and infinity counts."""
    g = tidy.groupby(SUBJECT_KEYS, sort=False)["value"]
    out = g.agg(
        value=_finite_mean,
        n_slices="size",
        n_infinite=lambda v: int(np.isinf(v.to_numpy(dtype=np.float64)).sum()),
        n_nan=lambda v: int(np.isnan(v.to_numpy(dtype=np.float64)).sum()),
    )
    return out.reset_index()


def _pooled_subject_values(per_subject: pd.DataFrame) -> pd.DataFrame:
    """Per-subject values averaged over seeds (one row per group x subject)."""
    keys = [k for k in SUBJECT_KEYS if k != "seed"]
    return per_subject.groupby(keys, sort=False)["value"].agg(_finite_mean).reset_index()


def summarise(tidy: pd.DataFrame) -> pd.DataFrame:
    """Mean +- std across subjects and across slices per dataset x method x direction x
    protocol x metric. ``mean``/``std`` follow the protocol's own aggregation (subjects for most
    protocols, slices for ``syndiff``); both views are always present."""
    if tidy.empty:
        return pd.DataFrame(
            columns=[*GROUP, "mean", "std", "aggregation", "mean_subjects", "std_subjects"]
        )
    per_subject = subject_means(tidy)
    pooled = _pooled_subject_values(per_subject)
    rows = []
    pooled_by = dict(iter(pooled.groupby(GROUP, sort=False)))
    per_subject_by = dict(iter(per_subject.groupby(GROUP, sort=False)))
    for key, grp in tidy.groupby(GROUP, sort=False):
        sel = dict(zip(GROUP, key, strict=True))
        subj = pooled_by[key]["value"].to_numpy(dtype=np.float64)
        fs = _finite(subj)
        slices = _finite(grp["value"].to_numpy(dtype=np.float64))
        ps = per_subject_by[key]
        seed_means = ps.groupby("seed")["value"].agg(
            lambda v: _finite(v.to_numpy()).mean() if _finite(v.to_numpy()).size else np.nan
        )
        seed_means = _finite(seed_means.to_numpy())
        proto = PROTOCOLS.get(sel["protocol"])
        aggregation = proto.aggregation if proto else "subject"
        row = {
            **sel,
            "mean_subjects": float(fs.mean()) if fs.size else math.nan,
            "std_subjects": float(fs.std()) if fs.size else math.nan,
            "n_subjects": int(len(subj)),
            "n_subjects_infinite": int(np.isinf(subj).sum()),
            "mean_slices": float(slices.mean()) if slices.size else math.nan,
            "std_slices": float(slices.std()) if slices.size else math.nan,
            "n_slices": int(grp[["subject", "slice"]].drop_duplicates().shape[0]),
            "n_values": int(len(grp)),
            "n_infinite": int(np.isinf(grp["value"].to_numpy(dtype=np.float64)).sum()),
            "n_seeds": int(grp["seed"].nunique()),
            "seed_std": float(seed_means.std()) if seed_means.size > 1 else math.nan,
            "aggregation": aggregation,
        }
        if "label" in grp:
            row["label"] = str(grp["label"].iloc[0])
        for col in ("pair", "source", "target"):  # the direction's contrasts, where recorded
            if col in grp:
                row[col] = grp[col].iloc[0]
        if fs.size == 0 and np.isinf(subj).any():
            row["mean_subjects"] = math.inf
        if aggregation == "slice":
            row["mean"], row["std"] = row["mean_slices"], row["std_slices"]
        else:
            row["mean"], row["std"] = row["mean_subjects"], row["std_subjects"]
        rows.append(row)
    cols = [*GROUP, "mean", "std", "aggregation"]
    df = pd.DataFrame(rows)
    return df[cols + [c for c in df.columns if c not in cols]]


def min_possible_p(n: int) -> float:
    """Smallest two-sided p-value of the exact Wilcoxon signed-rank test with n pairs."""
    return min(1.0, 2.0 * 0.5**n) if n > 0 else 1.0


SIGNIFICANCE_COLUMNS = [
    "dataset",
    "direction",
    "protocol",
    "metric",
    "reference",
    "method",
    "n",
    "mean_reference",
    "mean_method",
    "median_difference",
    "statistic",
    "p_value",
    "p_holm",
    "min_possible_p",
    "underpowered",
    "significant",
    "significant_holm",
    "note",
]


def wilcoxon_table(tidy: pd.DataFrame, reference: str, alpha: float = 0.05) -> pd.DataFrame:
    """Paired Wilcoxon signed-rank tests of ``reference`` against every other method."""
    rows = []
    if not tidy.empty and reference in set(tidy["method"]):
        pooled = _pooled_subject_values(subject_means(tidy))
        keys = ["dataset", "direction", "protocol", "metric"]
        for key, grp in pooled.groupby(keys, sort=False):
            wide = grp.pivot_table(index="subject", columns="method", values="value")
            if reference not in wide:
                continue
            for other in [m for m in wide.columns if m != reference]:
                pair = wide[[reference, other]].replace([np.inf, -np.inf], np.nan).dropna()
                n = len(pair)
                diff = (pair[reference] - pair[other]).to_numpy()
                minp = min_possible_p(n)
                row = dict(zip(keys, key, strict=True))
                row.update(
                    reference=reference,
                    method=other,
                    n=n,
                    mean_reference=float(pair[reference].mean()) if n else math.nan,
                    mean_method=float(pair[other].mean()) if n else math.nan,
                    median_difference=float(np.median(diff)) if n else math.nan,
                    statistic=math.nan,
                    p_value=math.nan,
                    min_possible_p=minp,
                    underpowered=bool(minp >= alpha),
                    note="",
                )
                if n == 0:
                    row["note"] = "no paired subjects with finite values"
                elif np.all(diff == 0):
                    row["note"] = "all paired differences are zero"
                else:
                    res = sps.wilcoxon(pair[reference], pair[other], alternative="two-sided")
                    row["statistic"] = float(res.statistic)
                    row["p_value"] = float(res.pvalue)
                if row["underpowered"]:
                    row["note"] = (
                        row["note"] + "; " if row["note"] else ""
                    ) + f"n={n} too small: p < {alpha} impossible (min p {minp:.3g})"
                row["significant"] = bool(
                    not row["underpowered"]
                    and np.isfinite(row["p_value"])
                    and row["p_value"] < alpha
                )
                rows.append(row)
    out = pd.DataFrame(rows, columns=SIGNIFICANCE_COLUMNS)
    return holm_adjusted(out, alpha)


def holm_adjusted(tests: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Add Holm-Bonferroni adjusted p-values (``statsmodels``' ``multipletests``): one family
    per dataset, direction, protocol and metric, i.e. the reference against every other method
    on one column of Table 1. Rows without a p-value stay out of the family."""
    from statsmodels.stats.multitest import multipletests

    tests = tests.copy()
    tests["p_holm"] = math.nan
    tests["significant_holm"] = False
    if tests.empty:
        return tests
    for _, grp in tests.groupby(["dataset", "direction", "protocol", "metric"], sort=False):
        p = pd.to_numeric(grp["p_value"], errors="coerce")
        finite = p[np.isfinite(p)]
        if finite.empty:
            continue
        adjusted = multipletests(finite.to_numpy(), alpha=alpha, method="holm")[1]
        tests.loc[finite.index, "p_holm"] = adjusted
    tests["significant_holm"] = (
        ~tests["underpowered"].astype(bool)
        & np.isfinite(tests["p_holm"])
        & (tests["p_holm"] < alpha)
    )
    return tests
