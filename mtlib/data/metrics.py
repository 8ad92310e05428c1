"""Course metrics (SST/Quora accuracy, STS Pearson) and the course's prediction-file format.

Prediction files are what the course's `test_model` writes (docs/original.md §1 "Dev/test"): a header
`id \\t Predicted_<...> \\n`, then one `<id> , <value> \\n` row per example. The header text, including the
course's "Similiary" typo, is kept byte-for-byte so our files diff cleanly against the authors'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from mtlib import TASKS
from mtlib.data.parse import Example, read_task_file

TASK_METRIC = {"sst": "accuracy", "para": "accuracy", "sts": "pearson"}
PREDICTION_COLUMNS = {"sst": "Predicted_Sentiment", "para": "Predicted_Is_Paraphrase", "sts": "Predicted_Similiary"}


def _arrays(pred: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred, dtype=float).ravel(), np.asarray(gold, dtype=float).ravel()
    if p.shape != g.shape:
        raise ValueError(f"{p.size} predictions for {g.size} gold labels")
    if p.size == 0:
        raise ValueError("no predictions to score")
    return p, g


def accuracy(pred: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray) -> float:
    """Fraction of exact matches (SST class ids; Quora 0/1 after thresholding the logit at 0.5)."""
    p, g = _arrays(pred, gold)
    return float(np.mean(p == g))


def pearson(pred: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray) -> float:
    """Pearson correlation as the course computes it (`np.corrcoef`); nan when either side is constant."""
    p, g = _arrays(pred, gold)
    if p.std() == 0 or g.std() == 0:
        return float("nan")  # np.corrcoef would warn and divide by zero
    return float(np.corrcoef(p, g)[0, 1])


def score(task: str, pred: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray) -> float:
    """The course metric of `task` (TASK_METRIC) on aligned predictions and gold labels."""
    if task not in TASK_METRIC:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    return accuracy(pred, gold) if TASK_METRIC[task] == "accuracy" else pearson(pred, gold)


def _format_value(task: str, value: float) -> str:
    # The course writes numpy values with f-strings: SST class ints "3", Quora floats "1.0", STS raw floats.
    return str(int(value)) if task == "sst" else repr(float(value))


def write_predictions(path: str | Path, task: str, ids: Iterable[str], values: Iterable[float]) -> Path:
    """Write a course prediction file (parent folders are created). Returns the path."""
    if task not in PREDICTION_COLUMNS:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    ids, values = list(ids), list(values)
    if len(ids) != len(values):
        raise ValueError(f"{len(ids)} ids but {len(values)} values")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fp:
        fp.write(f"id \t {PREDICTION_COLUMNS[task]} \n")
        fp.writelines(f"{i} , {_format_value(task, v)} \n" for i, v in zip(ids, values))
    return path


def read_predictions(path: str | Path) -> dict[str, float]:
    """Read a course prediction file into {id: value}; ids are lower-cased and stripped like the gold ids."""
    path = Path(path)
    with open(path, encoding="utf-8") as fp:
        lines = fp.read().splitlines()
    if not lines or lines[0].split("\t")[0].strip() != "id":
        first = lines[0][:60] if lines else "<empty file>"
        raise ValueError(f"{path} line 1: expected a header 'id \\t Predicted_...', found {first!r}")
    out: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != 2:
            raise ValueError(f"{path} line {number}: expected 'id , value', found {line[:80]!r}")
        key = parts[0].lower().strip()
        try:
            value = float(parts[1])
        except ValueError:
            raise ValueError(f"{path} line {number}: value {parts[1].strip()!r} is not a number") from None
        if key in out:
            raise ValueError(f"{path} line {number}: id {key!r} appears twice")
        out[key] = value
    return out


def _examples(ids: Iterable[str], limit: int = 3) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:limit]) + (", ..." if len(ids) > limit else "")


def score_predictions(task: str, predictions: Mapping[str, float], gold: Sequence[Example],
                      name: str = "predictions") -> float:
    """Score {id: value} against gold examples; every gold id needs exactly one prediction and vice versa."""
    gold_ids = {ex.id for ex in gold}
    extra = set(predictions) - gold_ids
    if extra:
        raise ValueError(f"{name}: {len(extra)} id(s) not in the gold file (e.g. {_examples(extra)})")
    missing = gold_ids - set(predictions)
    if missing:
        raise ValueError(f"{name}: {len(missing)} gold id(s) have no prediction (e.g. {_examples(missing)})")
    if any(ex.label is None for ex in gold):
        raise ValueError(f"{name}: the gold examples have no labels (a test file?)")
    pred = np.array([predictions[ex.id] for ex in gold], dtype=float)
    if TASK_METRIC.get(task) == "accuracy" and not np.all(pred == np.round(pred)):
        # Probabilities or logits would silently score ~0; the course files hold class ids.
        bad = next(ex.id for ex, v in zip(gold, pred) if v != round(v))
        raise ValueError(f"{name}: {task} predictions must be class ids, got {predictions[bad]} for id {bad}")
    return score(task, pred, [float(ex.label) for ex in gold])  # type: ignore[arg-type]


def score_file(task: str, predictions_path: str | Path, gold_path: str | Path) -> float:
    """The course metric of a prediction file against a labelled course csv (parsed like `mtlib.data`)."""
    gold = read_task_file(task, gold_path)  # unparseable gold rows are skipped, as the course does
    return score_predictions(task, read_predictions(predictions_path), gold, name=str(predictions_path))
