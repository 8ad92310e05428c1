"""What a run predicts on dev: SST (5x5) and Quora (2x2) confusion matrices and STS predictions against gold.

One row of three panels per run, from the run's course-format dev prediction files
(``predictions/<task>-dev-output.csv``) matched by id to the dev files of the data folder the run read. Confusion cells are coloured by the share of their gold class
(each row sums to 1, so a weak class stands out whatever its size) and labelled with counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import matplotlib
from matplotlib.figure import Figure
from seaborn.utils import relative_luminance

from mtlib import tasks as task_records
from mtlib.data.against_gold import class_names, confusion_counts, predictions_with_gold
from mtlib.data.metrics import accuracy, pearson
from mtlib.rundir import read_config, run_name
from mtlib.rundir.files import PREDICTIONS
from mtlib.results.plots._style import TASK_COLORS, TASK_NAMES, _subplots


def dev_predictions(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """{task: table of id, predicted, gold} for each task the run wrote a dev prediction file for."""
    data_dir = read_config(run_dir).get("data_dir")
    tasks = read_config(run_dir).get("tasks") or list(task_records.course())
    files = {t: Path(run_dir) / PREDICTIONS / f"{t}-dev-output.csv" for t in tasks}
    return {t: predictions_with_gold(path, t, data_dir) for t, path in files.items() if path.is_file()}


def _confusion(ax, task: str, pairs: pd.DataFrame | None) -> None:
    if pairs is None or pairs.empty:
        ax.text(0.5, 0.5, "no dev predictions", ha="center", va="center", transform=ax.transAxes)
        ax.set(title=TASK_NAMES[task], xticks=[], yticks=[])
        return
    counts = confusion_counts(task, pairs)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    _heatmap(ax, share, counts, class_names(task))
    ax.set_xlabel("predicted", fontsize=9)
    ax.set_ylabel("gold", fontsize=9)
    ax.tick_params(axis="x", labelrotation=35, labelsize=8)
    ax.tick_params(axis="y", labelrotation=0, labelsize=8)
    ax.set_title(
        f"{TASK_NAMES[task]}: accuracy {accuracy(pairs['predicted'], pairs['gold']):.3f} (n = {len(pairs):,})",
        fontsize=10,
    )


def _heatmap(ax, share: np.ndarray, counts: np.ndarray, labels: Sequence[str]) -> None:
    """seaborn.heatmap's look (Blues by share, counts written in, white cell borders) without its cost: seaborn
    draws the whole figure on every call to check tick-label overlap, so a panel of seven runs took 20 s."""
    cmap = matplotlib.colormaps["Blues"]
    ax.imshow(share, cmap=cmap, vmin=0, vmax=1, aspect="equal", interpolation="nearest")
    for (i, j), count in np.ndenumerate(counts):  # dark text on light cells, white on dark (seaborn's rule)
        ax.text(
            j,
            i,
            f"{count:d}",
            ha="center",
            va="center",
            fontsize=8,
            color=".15" if relative_luminance(cmap(share[i, j])) > 0.408 else "w",
        )
    n = len(labels)
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_xticks(np.arange(-0.5, n, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.5)
    ax.grid(which="major", visible=False)
    ax.tick_params(which="both", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _scatter(ax, task: str, pairs: pd.DataFrame | None) -> None:
    """A regression task's predictions against gold, over its label range (STS: 0-5)."""
    if pairs is None or pairs.empty:
        ax.text(0.5, 0.5, "no dev predictions", ha="center", va="center", transform=ax.transAxes)
        ax.set(title=TASK_NAMES[task], xticks=[], yticks=[])
        return
    lo, hi = task_records.get(task).label_range
    gold, pred = pairs["gold"].to_numpy(float), pairs["predicted"].to_numpy(float)
    alpha = float(np.clip(12 / np.sqrt(len(pairs)), 0.15, 0.8))  # dense clouds stay readable
    ax.scatter(gold, pred, s=9, alpha=alpha, color=TASK_COLORS[task], linewidths=0)
    low, high = min(lo, np.nanmin(pred)), max(hi, np.nanmax(pred))
    pad = (hi - lo) / 25
    ax.plot([lo, hi], [lo, hi], color="#888888", linewidth=1, linestyle="--", label="prediction = gold")
    ax.set(xlim=(lo - pad, hi + pad), ylim=(low - pad, high + pad))
    ax.set_xlabel(f"gold ({lo:g}\u2013{hi:g})", fontsize=9)
    ax.set_ylabel("predicted", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"{TASK_NAMES[task]}: Pearson r {pearson(pred, gold):.3f} (n = {len(pairs):,})", fontsize=10)


def prediction_panels(run_dirs: str | Path | Sequence[str | Path], labels: Mapping[str, str] | None = None) -> Figure:
    """For each run (one row each): a confusion matrix of each classification task's dev predictions (SST,
    Quora) and a scatter of each regression task's (STS). ``labels`` maps run names (row ids) to display names; each row is titled with it and the seed."""
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        fig, axes = _subplots(1, 1, figsize=(9, 1.2))
        axes[0].axis("off")
        axes[0].text(0.5, 0.5, "no finished runs with dev predictions", ha="center", va="center")
        return fig
    tasks = list(dict.fromkeys(t for d in run_dirs for t in read_config(d).get("tasks") or task_records.course()))
    widths = [
        0.85 if task_records.get(t).kind == "binary" else 1.1 if task_records.get(t).kind == "regression" else 1.25
        for t in tasks
    ]
    fig, axes = _subplots(
        len(run_dirs),
        len(tasks),
        figsize=(11 * len(tasks) / 3, 3.6 * len(run_dirs)),
        gridspec_kw={"width_ratios": widths},
    )
    for i, run_dir in enumerate(run_dirs):
        pairs = dev_predictions(run_dir)
        row = axes[len(tasks) * i : len(tasks) * (i + 1)]
        for ax, task in zip(row, tasks):  # a confusion matrix per classification task, a scatter per regression
            draw = _scatter if task_records.get(task).kind == "regression" else _confusion
            draw(ax, task, pairs.get(task))
        name = run_name(run_dir)
        row[0].annotate(
            f"{(labels or {}).get(name, name)} \u00b7 {run_dir.name}",
            xy=(0, 1),
            xycoords="axes fraction",
            xytext=(0, 22),
            textcoords="offset points",
            fontsize=11,
            fontweight="bold",
        )
    return fig
