"""Confusion matrices of a run's dev predictions (SST 5x5, Quora 2x2), read from its course-format files.

Rows are gold classes, columns predicted ones, as counts. The run's ``predictions/<task>-dev-output.csv`` is
matched by id to the labelled dev file of the data folder the run read (its config's ``data_dir``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlib.data import parse
from mtlib.data.metrics import LABEL_SETS, read_predictions

CLASS_NAMES = {"sst": ("0 neg", "1", "2 neu", "3", "4 pos"), "para": ("0 no", "1 para")}


def confusion_matrix(task: str, predicted, gold) -> np.ndarray:
    """[gold, predicted] counts of class ids (``LABEL_SETS[task]``)."""
    classes = LABEL_SETS[task]
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    index = {c: i for i, c in enumerate(classes)}
    for g, p in zip(gold, predicted):
        matrix[index[int(g)], index[int(p)]] += 1
    return matrix


def run_confusion(run_dir: str | Path, task: str, data_dir: str | None) -> np.ndarray | None:
    """The confusion matrix of a run's dev prediction file for ``task``; None when the run wrote none."""
    path = Path(run_dir) / "predictions" / f"{task}-dev-output.csv"
    if not path.is_file():
        return None
    predictions = read_predictions(path, task)
    gold = {ex.id: ex.label for ex in parse.load_split(task, "dev", data_dir)}
    missing = [i for i in predictions if i not in gold]
    if missing:
        raise ValueError(f"{path}: {len(missing)} id(s) not in the {task} dev file (e.g. {missing[0]}); "
                         "was the run trained on another data folder?")
    ids = list(predictions)
    return confusion_matrix(task, [predictions[i] for i in ids], [gold[i] for i in ids])
