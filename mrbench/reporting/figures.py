"""Figures of the benchmark (PNG for the report, PDF for papers).

- The qualitative grid of the DisDiff paper's Fig. 2: source, every method's prediction and the
  target of one test slice, with absolute-error maps below on one shared colour scale, so that
  the methods' errors can be compared by eye.
- Box plots of per-subject means: a grid of panels (directions x metrics, units on the axes),
  a box per method, which show the spread that mean ± std hides.
- Training curves: each method's losses and the validation PSNR of all methods over steps.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mrbench.io import atomic_path  # noqa: E402
from mrbench.reporting.labels import direction_label, direction_order, ordered  # noqa: E402
from mrbench.reporting.train_logs import LOG_NON_LOSS, read_csv_or_empty  # noqa: E402


def save_figure(fig: plt.Figure, prefix: str | Path) -> list[Path]:
    """Write ``prefix``.png and ``prefix``.pdf atomically and close the figure."""
    prefix = Path(prefix)
    paths = []
    for ext in (".png", ".pdf"):
        path = prefix.with_suffix(ext)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight", format=ext[1:])
        paths.append(path)
    plt.close(fig)
    return paths


def _show(ax: plt.Axes, img: np.ndarray, **kw) -> matplotlib.image.AxesImage:
    ax.set_xticks([])
    ax.set_yticks([])
    # arrays are (x, y); rotate so that anterior is up as in radiological viewers
    return ax.imshow(np.rot90(img), interpolation="nearest", **kw)


def qualitative_grid(
    store_dir: str | Path,
    direction: str,
    predictions: list[tuple[str, str | Path]],
    out_prefix: str | Path,
    subject: str | None = None,
    slice_index: int | None = None,
    title: str = "",
) -> list[Path]:
    """Fig. 2-style grid for one test slice. ``predictions``: (label, prediction folder).
    Source and target contrast come from ``direction`` (any ``<source>_to_<target>`` whose two
    contrasts the store holds), titled with their display names."""
    from mrbench.domain import CONTRASTS
    from mrbench.evaluation.scoring import prediction_windows
    from mrbench.io import InputError
    from mrbench.pairs import parse_direction
    from mrbench.slices import SliceStore

    try:
        src_mod, dst_mod = parse_direction(direction)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    store = SliceStore(store_dir, pair=(src_mod, dst_mod))
    subject = subject or store.subjects[0]
    if subject not in store.subjects:
        raise InputError(f"{store_dir}: no test subject {subject!r} (qualitative.subject)")
    rows = store.subject_rows(subject)
    slices = store.index.set_index("row").loc[rows, "slice"].to_numpy()
    if slice_index is None:
        k = len(rows) // 2
    else:
        hits = np.flatnonzero(slices == int(slice_index))
        if hits.size == 0:
            raise InputError(
                f"{store_dir}: subject {subject} has no test slice {slice_index} "
                f"(qualitative.slice; available {slices.min()}-{slices.max()})"
            )
        k = int(hits[0])
    source = np.asarray(store.arrays[src_mod][rows[k]])
    target = np.asarray(store.arrays[dst_mod][rows[k]])
    preds = [(label, prediction_windows(d, store, subject)[k]) for label, d in predictions]
    errors = [np.abs(p - target) for _, p in preds]
    vmax = max([float(np.percentile(e, 99.5)) for e in errors] + [1e-3])
    n = len(preds) + 2
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.2), squeeze=False)
    _show(axes[0, 0], source, cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title(f"Source ({CONTRASTS[src_mod]})", fontsize=8)
    err_im = None
    for i, ((label, pred), err) in enumerate(zip(preds, errors, strict=True), start=1):
        _show(axes[0, i], pred, cmap="gray", vmin=0, vmax=1)
        axes[0, i].set_title(label, fontsize=8)
        err_im = _show(axes[1, i], err, cmap="inferno", vmin=0, vmax=vmax)
        mae = float(err.mean())
        axes[1, i].set_title(f"|error|, MAE {mae:.3f}", fontsize=7)
    _show(axes[0, n - 1], target, cmap="gray", vmin=0, vmax=1)
    axes[0, n - 1].set_title(f"Target ({CONTRASTS[dst_mod]})", fontsize=8)
    axes[1, 0].axis("off")
    axes[1, n - 1].axis("off")
    if err_im is not None:
        fig.colorbar(err_im, ax=axes[1, n - 1], fraction=0.9, label="absolute error")
    fig.suptitle(
        title or f"{direction_label(direction)}, subject {subject}, slice {slices[k]}",
        fontsize=9,
    )
    return save_figure(fig, out_prefix)


def _label(method: str, labels: dict[str, str] | None) -> str:
    return (labels or {}).get(method, method)


def boxplots(
    per_subject: pd.DataFrame,
    out_prefix: str | Path,
    protocol: str,
    metrics: list[str],
    title: str = "",
    order: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> list[Path]:
    """Write :func:`boxplot_figure` as PNG and PDF."""
    return save_figure(
        boxplot_figure(per_subject, protocol, metrics, title, order, labels), out_prefix
    )


def boxplot_figure(
    per_subject: pd.DataFrame,
    protocol: str,
    metrics: list[str],
    title: str = "",
    order: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> plt.Figure:
    """Per-subject means (seed-averaged): a grid of panels, one row per direction (every contrast
    pair run, the paper's T1w/T2w first) and one column per metric (its unit on the axis), a box
    per method with the subjects as dots.

    ``order``: method order (the roster's; others follow as found); ``labels`` maps config names
    to the names shown (the plugins' display names)."""
    import seaborn as sns

    from mrbench.evaluation.metrics import unit_of

    sel = per_subject[(per_subject["protocol"] == protocol) & per_subject["metric"].isin(metrics)]
    sel = sel.replace([np.inf, -np.inf], np.nan).dropna(subset=["value"])
    keys = ["method", "direction", "metric", "subject"]
    sel = sel.groupby(keys, sort=False)["value"].mean().reset_index()
    metrics = [m for m in metrics if m in set(sel["metric"])] or metrics[:1]
    order = ordered(list(sel["method"]), order or [])
    names = [_label(m, labels) for m in order]
    directions = direction_order(list(sel["direction"])) or ["t1_to_t2"]
    width = max(2.6, 0.42 * len(order) + 0.8)
    fig, axes = plt.subplots(
        len(directions),
        len(metrics),
        figsize=(width * len(metrics), 2.6 * len(directions) + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for r, direction in enumerate(directions):
        for c, metric in enumerate(metrics):
            ax = axes[r, c]
            data = sel[(sel["metric"] == metric) & (sel["direction"] == direction)]
            if data.empty:
                ax.text(0.5, 0.5, "no finite values", ha="center", transform=ax.transAxes)
            else:
                sns.boxplot(
                    data=data, x="method", y="value", order=order, ax=ax, fliersize=0, width=0.6
                )
                sns.stripplot(
                    data=data, x="method", y="value", order=order, ax=ax, size=2.5, color="k"
                )
            base = metric.removesuffix("_brain")
            unit = unit_of(metric) if base in ("psnr", "ssim", "ssim_gauss", "mae") else ""
            ax.set_ylabel(f"{metric} ({unit})" if unit else metric, fontsize=8)
            ax.set_xlabel("")
            ax.set_title(f"{direction_label(direction)}: {metric}", fontsize=8)
            ax.set_xticks(range(len(order)))
            ax.set_xticklabels(names if r == len(directions) - 1 else [], rotation=35, ha="right")
            ax.tick_params(labelsize=7)
    fig.suptitle(title or f"Per-subject means ({protocol})", fontsize=9)
    return fig


#: fewer rows than this in a log cannot draw a curve
MIN_LOG_ROWS = 2


def training_curves(
    runs: list[tuple[str, str | Path]],
    out_prefix: str | Path,
    title: str = "",
    labels: dict[str, str] | None = None,
) -> list[Path]:
    """Write :func:`training_curves_figure` as PNG and PDF."""
    return save_figure(training_curves_figure(runs, title, labels), out_prefix)


def training_curves_figure(
    runs: list[tuple[str, str | Path]],
    title: str = "",
    labels: dict[str, str] | None = None,
) -> plt.Figure:
    """Losses of each trained method and the validation PSNR of all methods over steps.

    ``runs``: (method, run folder holding train_log.csv and val_log.csv). Methods without a
    training log (nothing to train) appear in the validation panel only; a log with fewer than
    two rows gives a panel that says "not enough log rows" instead of an empty one.
    """
    logs = []
    for method, run_dir in runs:
        run_dir = Path(run_dir)
        tl = read_csv_or_empty(run_dir / "train_log.csv")
        vl = read_csv_or_empty(run_dir / "val_log.csv")
        logs.append((method, tl, vl))
    with_losses = [(m, tl) for m, tl, _ in logs if not tl.empty and _loss_columns(tl)]
    n = len(with_losses) + 1
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False, layout="constrained"
    )
    flat = axes.ravel()
    for ax, (method, tl) in zip(flat, with_losses, strict=False):
        ax.set_title(f"{_label(method, labels)}: training losses", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if len(tl) < MIN_LOG_ROWS:
            _say(ax, f"not enough log rows ({len(tl)} in train_log.csv)")
            continue
        for col in _loss_columns(tl):
            ax.plot(tl["step"], pd.to_numeric(tl[col], errors="coerce"), label=col, lw=1)
        ax.legend(fontsize=6, ncol=2)
    ax = flat[len(with_losses)]
    for i, (method, tl, vl) in enumerate(logs):
        if vl.empty or "psnr" not in vl:
            continue
        psnr = pd.to_numeric(vl["psnr"], errors="coerce")
        name = _label(method, labels)
        if tl.empty:  # nothing to train: one validation of the fitted method
            ax.axhline(
                float(psnr.iloc[-1]), ls="--", lw=1, color=f"C{i}", label=f"{name} (no training)"
            )
        else:
            ax.plot(vl["step"], psnr, marker="o", ms=3, lw=1, color=f"C{i}", label=name)
    ax.set_title("validation PSNR", fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel("PSNR (dB)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
    else:
        _say(ax, "not enough log rows (no val_log.csv with a PSNR)")
    for extra in flat[n:]:
        extra.axis("off")
    fig.suptitle(title, fontsize=9)
    return fig


def _say(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, transform=ax.transAxes)


def _loss_columns(log: pd.DataFrame) -> list[str]:
    return [c for c in log.columns if c not in LOG_NON_LOSS and not c.startswith("lr_")]


__all__ = [
    "boxplot_figure",
    "boxplots",
    "qualitative_grid",
    "save_figure",
    "training_curves",
    "training_curves_figure",
]
