"""Shared by every figure: task colours and names, figure creation, saving, history helpers.

Figures are made with pyplot, so a notebook shows each one once at the end of its cell. Importing this sets
no backend: matplotlib picks one (Agg where there is no display, as in scripts, tests and CI), and a program
that wants another sets it itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from mtlib import tasks as task_records
from mtlib.rundir import read_history, run_name

History = Union[str, Path, Sequence[dict]]


class _ByTask(Mapping):
    """A task's declared ``colour`` or ``display`` name (mtlib.tasks), read when asked, beside fixed entries
    for what is not a task (the mean)."""

    def __init__(self, attribute: str, fixed: dict[str, str]):
        self.attribute, self.fixed = attribute, fixed

    def __getitem__(self, key: str) -> str:
        if key in self.fixed:
            return self.fixed[key]
        if key not in task_records.known():
            raise KeyError(key)
        return getattr(task_records.get(key), self.attribute)

    def __iter__(self):
        return iter((*task_records.known(), *self.fixed))

    def __len__(self) -> int:
        return len(task_records.known()) + len(self.fixed)


# The course's colours are Okabe-Ito (params/tasks.yaml): distinguishable in colour-blind vision and in print.
TASK_COLORS = _ByTask("colour", {"mean": "#222222"})
TASK_NAMES = _ByTask("display", {"mean": "mean"})
PAIR_COLORS = {"sst|para": "#CC79A7", "sst|sts": "#56B4E9", "para|sts": "#D55E00"}
SST_CLASSES = ("0 very neg.", "1 neg.", "2 neutral", "3 pos.", "4 very pos.")
X_LABELS = {
    "examples_seen": "training examples seen",
    "epoch": "epoch (counted across phases)",
    "wall": "wall-clock seconds",
}


# ---------------------------------------------------------------- figures and files


def _subplots(nrows: int = 1, ncols: int = 1, **kw: Any) -> tuple[Figure, list]:
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(nrows, ncols, squeeze=False, layout="constrained", **kw)
    return fig, list(axes.ravel())


def save(fig: Figure, name: str, folder: str | Path = "outputs/figures", dpi: int = 120) -> Path:
    """Write ``fig`` to ``folder/name.png`` (folder created) and return the path."""
    from mtlib.config.run_config import resolve_path

    path = resolve_path(folder) / (name if name.endswith(".png") else f"{name}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def save_per_run(
    plot: Callable[[list[dict]], Figure],
    run_dirs: Sequence[str | Path],
    prefix: str,
    folder: str | Path = "outputs/figures",
) -> list[Path]:
    """Draw ``plot(history)`` for each run and save it as ``<prefix>_<run name>_<seed>.png``."""
    paths = []
    for d in run_dirs:
        d = Path(d)
        name = run_name(d)
        paths.append(save(plot(read_history(d)), f"{prefix}_{name}_{d.name}", folder))
    return paths


# ---------------------------------------------------------------- history helpers


def _history(h: History) -> list[dict]:
    return read_history(h) if isinstance(h, (str, Path)) else list(h)


def _rows(history: list[dict], kind: str) -> list[dict]:
    return [r for r in history if r.get("type") == kind]


def _color(key: str, i: int = 0) -> str:
    return TASK_COLORS.get(key) or PAIR_COLORS.get(key) or sns.color_palette("tab10")[i % 10]


def _smooth(values: Sequence[float], window: int | None) -> np.ndarray:
    s = pd.Series(values, dtype=float)
    window = window or max(1, len(s) // 15)
    return s.rolling(window, min_periods=1, center=True).mean().to_numpy()
