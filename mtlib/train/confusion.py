"""Confusion matrices of a run's dev predictions (SST 5x5, Quora 2x2), read from its course-format files.

Rows are gold classes, columns predicted ones, as counts. The run's ``predictions/<task>-dev-output.csv`` is
matched by id to the labelled dev file of the data folder the run read (``mtlib.data.against_gold``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlib.data.against_gold import predictions_with_gold
from mtlib.data.metrics import LABEL_SETS
from mtlib.rundir.files import PREDICTIONS

CLASS_NAMES = {"sst": ("very neg.", "neg.", "neutral", "pos.", "very pos."), "para": ("not para.", "paraphrase")}


def confusion_matrix(task: str, predicted, gold) -> np.ndarray:
    """[gold, predicted] counts of class ids (``LABEL_SETS[task]``), empty classes included."""
    classes = LABEL_SETS[task]
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    index = {c: i for i, c in enumerate(classes)}
    for g, p in zip(gold, predicted):
        matrix[index[int(g)], index[int(p)]] += 1
    return matrix


def run_confusion(run_dir: str | Path, task: str, data_dir: str | None) -> np.ndarray | None:
    """The confusion matrix of a run's dev prediction file for ``task``; None when the run wrote none."""
    path = Path(run_dir) / PREDICTIONS / f"{task}-dev-output.csv"
    if not path.is_file():
        return None
    pairs = predictions_with_gold(path, task, data_dir)
    return confusion_matrix(task, pairs["predicted"], pairs["gold"])
