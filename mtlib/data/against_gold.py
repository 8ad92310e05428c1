"""A course-format prediction file beside the gold labels of the split it predicts (for confusion matrices and
the STS scatter of prediction against gold)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from mtlib import tasks as task_records
from mtlib.data import parse
from mtlib.data.metrics import label_set, read_predictions


def class_names(task: str) -> tuple[str, ...]:
    """Short names of a classification task's classes, in label order (axis labels of confusion matrices):
    the declared ``class_names``, else the class ids."""
    record = task_records.get(task)
    return record.class_names or tuple(map(str, record.labels))


@functools.lru_cache(maxsize=16)
def _gold(task: str, split: str, data_dir: str | None) -> dict[str, float]:
    return {ex.id: ex.label for ex in parse.load_split(task, split, data_dir)}


def predictions_with_gold(
    path: str | Path, task: str, data_dir: str | Path | None = None, split: str = "dev"
) -> pd.DataFrame:
    """Table of id, predicted, gold: each prediction of ``path`` matched by id to the labelled ``split`` file of
    ``data_dir`` (a run whose final dev set was a subsample predicted, and is paired on, only those examples).
    An id the gold file lacks is an error naming the file: the predictions came from another data folder."""
    predicted = read_predictions(path, task)
    gold = _gold(task, split, None if data_dir is None else str(data_dir))
    missing = [i for i in predicted if i not in gold]
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} id(s) not in the {task} {split} file of "
            f"{data_dir or 'the default data folder'} (e.g. {missing[0]}); were these predictions "
            "made on another data folder?"
        )
    return pd.DataFrame(
        {"id": list(predicted), "predicted": list(predicted.values()), "gold": [gold[i] for i in predicted]}
    )


def confusion_counts(task: str, pairs: pd.DataFrame) -> np.ndarray:
    """[gold, predicted] counts over the task's classes (``label_set``), empty classes included, from a table of
    ``predictions_with_gold``."""
    classes = list(label_set(task))
    table = pd.crosstab(pairs["gold"].astype(int), pairs["predicted"].astype(int))
    return table.reindex(index=classes, columns=classes, fill_value=0).to_numpy()
