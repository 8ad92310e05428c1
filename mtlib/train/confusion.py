"""Confusion matrices of a run's dev predictions (each classification task's: SST 5x5, Quora 2x2), read from
its course-format files.

Rows are gold classes, columns predicted ones, as counts. The run's ``predictions/<task>-dev-output.csv`` is
matched by id to the labelled dev file of the data folder the run read (``mtlib.data.against_gold``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlib.data.against_gold import confusion_counts, predictions_with_gold
from mtlib.rundir.files import PREDICTIONS


def run_confusion(run_dir: str | Path, task: str, data_dir: str | None) -> np.ndarray | None:
    """The confusion matrix of a run's dev prediction file for ``task``; None when the run wrote none."""
    path = Path(run_dir) / PREDICTIONS / f"{task}-dev-output.csv"
    if not path.is_file():
        return None
    return confusion_counts(task, predictions_with_gold(path, task, data_dir))
