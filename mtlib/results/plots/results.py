"""Results figures (notebook 07 and each notebook's summary): ours vs the paper per experiments row."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mtlib.results.plots._style import TASK_COLORS, TASK_NAMES, _subplots


def results_bars(table: pd.DataFrame) -> Figure:
    """Ours vs the paper per experiments row: mean and each task, ours with 95% CI error bars.

    ``table`` is ``mtlib.results.scores.results_table(...)``; rows without runs show only the paper's bar.
    """
    # 2 x 2 at 10 inches: shown at notebook width (~900 px) the row names stay ~10 px tall (1 x 4 at 17 in: ~5 px)
    fig, axes = _subplots(2, 2, figsize=(10, 2 * (0.32 * len(table) + 1.3)), sharey=True)
    y = np.arange(len(table))
    for ax, metric in zip(axes, ("mean", "sst", "para", "sts")):
        ours = table[metric].to_numpy(dtype=float)
        err = np.nan_to_num(table[f"{metric}_ci"].to_numpy(dtype=float))
        ax.barh(y - 0.2, ours, 0.4, xerr=err, color=TASK_COLORS[metric], label="ours", error_kw={"linewidth": 1})
        ax.barh(y + 0.2, table[f"paper_{metric}"].to_numpy(dtype=float), 0.4, color="#BBBBBB", label="paper")
        low = np.nanmin(np.append(ours - err, 0.0))  # an STS Pearson r can be negative
        title = f"dev {TASK_NAMES[metric]}" + (" (plain mean of 3)" if metric == "mean" else "")
        ax.set(xlim=(min(0.0, 1.1 * low), 1), title=title)
        ax.legend(fontsize=9, loc="lower right")
    for ax in axes[::2]:  # the left column names the rows; sharey carries them to the right
        ax.set_yticks(y, list(table["id"]), fontsize=10)
    axes[0].invert_yaxis()
    return fig
