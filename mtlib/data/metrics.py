"""Course metrics (SST/Quora accuracy, STS Pearson) and the course's prediction-file format.

Prediction files are what the course's `test_model` writes (docs/original.md §1 "Dev/test"): a header
`id \\t Predicted_<...> \\n`, then one `<id> , <value> \\n` row per example. The header text, including the
course's "Similiary" typo, is kept byte-for-byte so our files diff cleanly against the authors'.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from mtlib import tasks as task_records
from mtlib.data.parse import Example, read_task_file, utf8_problem
from mtlib.rundir.atomic import atomic_write


def metric_name(task: str) -> str:
    """ "accuracy" or "pearson": the task's declared metric."""
    return task_records.get(task).metric


def label_set(task: str) -> tuple[int, ...]:
    """The class ids of a classification task; () for regression (any finite number)."""
    record = task_records.get(task)
    return () if record.kind == "regression" else record.labels


def _number(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def prediction_problem(task: str, value: float) -> str | None:
    """Why ``value`` cannot be a ``task`` prediction (outside the task's label set, NaN), or None; callers add
    where it is and ``expected(task)``."""
    value, labels = float(value), label_set(task)
    if not math.isfinite(value):
        return f"{task} prediction {value} is not a finite number"
    if labels and not value.is_integer():
        # Probabilities or logits would silently score ~0; the course files hold class ids.
        return f"{task} predictions must be class ids, got {_number(value)}"
    if labels and value not in labels:
        return f"{task} prediction {_number(value)} is outside the label set"
    return None


def expected(task: str) -> str:
    labels = label_set(task)
    return f"expected {task_records.get(task).label_text() if labels else 'a finite number'}"


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
    """Pearson correlation as the course computes it (`np.corrcoef`); exactly 0.0 for a constant prediction,
    nan for constant gold labels or a non-finite value.

    A constant prediction (a collapsed model) has no correlation; the course's `np.corrcoef` gave nan, which
    dropped that seed from every mean and comparison over seeds, exactly the seeds of a collapse. It scores 0:
    no linear association, what such a model earns. A fitted r is never exactly 0.0, so readers of metrics.json
    recognise the collapse by that value (`mtlib.results.scores.collapsed_tasks`; docs/original.md D51)."""
    p, g = _arrays(pred, gold)
    if not (np.isfinite(p).all() and np.isfinite(g).all()):
        return float("nan")  # a diverged model; callers that must refuse it check first
    if g.std() == 0:
        return float("nan")  # no gold variation: the score is undefined (np.corrcoef would divide by zero)
    if p.std() == 0:
        return 0.0  # a constant prediction (see above)
    return float(np.corrcoef(p, g)[0, 1])


def score(task: str, pred: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray) -> float:
    """The metric of `task` (its declared ``metric``) on aligned predictions and gold labels.

    SST and Quora predictions outside the task's label set (SST 5 or 2.5, Quora 2, NaN) are refused: they
    could only come from a bug, and would silently count as wrong. A non-finite STS prediction gives nan
    rather than an error here, so that training can report a diverged model as a numeric fault (the trainer
    checks its dev predictions); ``score_predictions`` and ``score_file`` refuse it."""
    metric = metric_name(task)
    p, _ = _arrays(pred, gold)
    if label_set(task):
        bad = [i for i, v in enumerate(p) if prediction_problem(task, v)]
        if bad:
            raise ValueError(
                f"{prediction_problem(task, p[bad[0]])} (at index {bad[0]}; {len(bad)} of {p.size} "
                f"predictions); {expected(task)}"
            )
    return accuracy(pred, gold) if metric == "accuracy" else pearson(pred, gold)


def _format_value(task: str, value: float) -> str:
    # The course writes numpy values with f-strings: SST class ints "3", Quora floats "1.0", STS raw floats.
    return str(int(value)) if task_records.get(task).kind == "multiclass" else repr(float(value))


def write_predictions(path: str | Path, task: str, ids: Iterable[str], values: Iterable[float]) -> Path:
    """Write a course prediction file (parent folders are created). Returns the path."""
    column = task_records.get(task).prediction_column
    ids, values = list(ids), list(values)
    if len(ids) != len(values):
        raise ValueError(f"{len(ids)} ids but {len(values)} values")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"id \t {column} \n", *(f"{i} , {_format_value(task, v)} \n" for i, v in zip(ids, values))]
    return atomic_write(path, "".join(lines))


def read_predictions(path: str | Path, task: str | None = None) -> dict[str, float]:
    """Read a course prediction file into {id: value}; ids are lower-cased and stripped like the gold ids.
    With ``task``, a value outside the task's label set (``prediction_problem``) is refused with its line."""
    path = Path(path)
    if task is not None:
        task_records.get(task)  # an unknown task: one line naming the known ones
    try:
        with open(path, encoding="utf-8") as fp:
            lines = fp.read().splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: {utf8_problem(path)}; is it a prediction file?") from None
    if not lines:
        raise ValueError(
            f"{path}: the file is empty (expected a header 'id \\t Predicted_...' and one 'id , value' row per example)"
        )
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
        problem = prediction_problem(task, value) if task is not None else None
        if problem:
            raise ValueError(f"{path} line {number}: {problem} for id {key}; {expected(task)}")
        out[key] = value
    return out


def _examples(ids: Iterable[str], limit: int = 3) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:limit]) + (", ..." if len(ids) > limit else "")


def score_predictions(
    task: str, predictions: Mapping[str, float], gold: Sequence[Example], name: str = "predictions"
) -> float:
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
    task_records.get(task)
    pred = np.array([predictions[ex.id] for ex in gold], dtype=float)
    bad = [(ex.id, v) for ex, v in zip(gold, pred) if prediction_problem(task, v)]
    if bad:
        more = f" ({len(bad)} of {len(pred)} predictions are outside the label set)" if len(bad) > 1 else ""
        raise ValueError(f"{name}: {prediction_problem(task, bad[0][1])} for id {bad[0][0]}{more}; {expected(task)}")
    return score(task, pred, [float(ex.label) for ex in gold])  # type: ignore[arg-type]


def score_file(task: str, predictions_path: str | Path, gold_path: str | Path) -> float:
    """The course metric of a prediction file against a labelled course csv (parsed like `mtlib.data`)."""
    gold = read_task_file(task, gold_path)  # unparseable gold rows are skipped, as the course does
    return score_predictions(task, read_predictions(predictions_path, task), gold, name=str(predictions_path))
