"""Notebook 08's overview: per method, the dev mean with its 95% CI, the combination's share of training time,
and the share of conflicting task pairs (``mtlib.results.methods.methods_table``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mtlib.results.plots._style import TASK_COLORS, _subplots

PAPER_ROW, BEYOND_ROW = "#0072B2", "#CC79A7"  # the paper's PCGrad / Vaccine rows vs the rows beyond it


def methods_overview(table: pd.DataFrame) -> Figure:
    """Three panels sharing one row per method: dev mean ± 95% CI (one seed: no bar), combination share of
    the fine-tuning phase's training time, mean share of conflicting pairs (cos < 0) over its updates."""
    fig, axes = _subplots(1, 3, figsize=(15, 0.36 * len(table) + 1.8), sharey=True)
    y = np.arange(len(table))
    colors = [BEYOND_ROW if b else PAPER_ROW for b in table["beyond_paper"]]
    panels = (
        ("mean", "mean_ci", "dev mean (plain mean of 3)"),
        ("combine_share", None, "combination share of an update"),
        ("conflict_share", None, "share of conflicting task pairs"),
    )
    for ax, (column, ci, title) in zip(axes, panels):
        values = table[column].to_numpy(dtype=float) if column in table else np.full(len(table), np.nan)
        err = np.nan_to_num(table[ci].to_numpy(dtype=float)) if ci else None
        ax.barh(y, values, 0.6, xerr=err, color=colors, error_kw={"linewidth": 1})
        if column == "mean":
            control = np.flatnonzero(table["id"].to_numpy() == "sum_all")  # what every method is read against
            if len(control) and np.isfinite(values[control[0]]):
                ax.axvline(values[control[0]], color=TASK_COLORS["mean"], linestyle="--", linewidth=1)
        if column == "combine_share":
            ax.axvline(0.05, color="#D55E00", linestyle=":", linewidth=1)  # the 5% budget
        ax.set(title=title)
    axes[0].set_yticks(y, list(table["id"]), fontsize=8)
    axes[0].invert_yaxis()
    return fig
