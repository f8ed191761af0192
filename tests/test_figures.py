"""Figures a paper can use: box plots as a grid of panels with units and display names,
training curves that say when a log is too short to draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mrbench.reporting.figures import boxplot_figure, training_curves, training_curves_figure

METHODS = ["identity", "cyclegan", "syndiff", "unit_ddpm", "disdiff", "disdiff_no_dc"]


def _per_subject() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for m_i, method in enumerate(METHODS):
        for direction in ("t1_to_t2", "t2_to_t1"):
            for metric, base in (("psnr", 20.0), ("ssim", 80.0), ("mae", 0.05)):
                for s in range(4):
                    rows.append(
                        {
                            "method": method,
                            "direction": direction,
                            "protocol": "max01",
                            "metric": metric,
                            "subject": f"s{s}",
                            "value": base + m_i + rng.normal(),
                        }
                    )
    return pd.DataFrame(rows)


def test_boxplots_are_a_grid_with_units_and_display_names() -> None:
    labels = {"disdiff": "DisDiff", "disdiff_no_dc": "DisDiff w/o D_c"}
    fig = boxplot_figure(_per_subject(), "max01", ["psnr", "ssim", "mae"], labels=labels)
    axes = fig.axes
    assert len(axes) == 6  # 2 directions x 3 metrics
    ylabels = {ax.get_ylabel() for ax in axes}
    assert ylabels == {"psnr (dB)", "ssim (%)", "mae (a.u.)"}
    bottom = [t.get_text() for t in axes[-1].get_xticklabels()]
    assert "DisDiff w/o D_c" in bottom and "disdiff_no_dc" not in bottom
    width, height = fig.get_size_inches() * 150
    assert width < 2 * 1500 and height > 500  # a grid, not a 3609 x 534 px strip
    import matplotlib.pyplot as plt

    plt.close(fig)


def _run(folder: Path, train_rows: int, val_rows: int) -> Path:
    folder.mkdir(parents=True)
    steps = list(range(1, train_rows + 1))
    pd.DataFrame({"step": steps, "loss_g": [1.0 / s for s in steps]}).to_csv(
        folder / "train_log.csv", index=False
    )
    vsteps = list(range(1, val_rows + 1))
    pd.DataFrame({"step": vsteps, "psnr": [10.0 + s for s in vsteps]}).to_csv(
        folder / "val_log.csv", index=False
    )
    return folder


def test_training_curves_say_when_a_log_is_too_short(tmp_path: Path) -> None:
    runs = [("short", _run(tmp_path / "a", 1, 1)), ("long", _run(tmp_path / "b", 5, 3))]
    fig = training_curves_figure(runs, labels={"long": "Long method"})
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("not enough log rows" in t for t in texts)
    titles = [ax.get_title() for ax in fig.axes]
    assert "Long method: training losses" in titles
    assert len(fig.axes[1].lines) == 1  # the long run's one loss curve
    import matplotlib.pyplot as plt

    plt.close(fig)
    paths = training_curves(runs, tmp_path / "curves")
    assert all(p.stat().st_size > 1000 for p in paths)
