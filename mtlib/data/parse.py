"""Course data: parsing and loaders (the file registry and fetching are in `mtlib.data.sources`).

Parsing follows the course starter loader (`datasets.py` of gpoesia/minbert-default-final-project, docs/original.md §1):
`csv.DictReader(delimiter='\\t')` with default quoting, SST text `lower().strip()`, Quora/STS text through
`preprocess_string`. Unlike the course, rows that fail to parse are counted and logged, never dropped silently.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from mtlib import tasks as task_records
from mtlib.data.sources import FETCH_COMMAND, OPTIONAL_FILES, resolve_data_dir
from mtlib.tasks import Task

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
QUORA_TRAIN_OPTIONS = ("head", "head+extra")  # a task's train_subsets (the course's Quora), by config key quora_train
QUORA_TRAIN_FULL_ROWS = 141_506  # rows of the course's quora-train.csv, for describing subsets


@dataclass(frozen=True)
class Example:
    id: str
    sentences: tuple[str, ...]  # normalised text: one per text column of its task (a single sentence or a pair)
    label: int | float | None  # a class id, or a number (regression); None for test files


@dataclass
class LoadReport:
    files: tuple[str, ...]
    rows: int  # records csv.DictReader produced
    skipped: int  # rows dropped because a field failed to parse
    reasons: list[str] = field(default_factory=list)  # the first few, with file and line
    source: str = ""  # one line a run can record, e.g. "subset head+extra (56,331 usable of 141,506)"


class ExampleList(list[Example]):
    """A list of `Example` that also carries the `LoadReport` of how it was read."""

    def __init__(self, examples: list[Example], report: LoadReport) -> None:
        super().__init__(examples)
        self.report = report


# ---------------------------------------------------------------- parsing


def preprocess_string(s: str) -> str:
    """Course normalisation for Quora and STS: lowercase, space before . ? , ' and collapse whitespace."""
    return " ".join(s.lower().replace(".", " .").replace("?", " ?").replace(",", " ,").replace("'", " '").split())


def _normalise(task: Task, text: str) -> str:
    return text.lower().strip() if task.normalise == "lower_strip" else preprocess_string(text)


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")


def _task_split(task: str, split: str) -> Task:
    record = task_records.get(task)
    _check("split", split, SPLITS)
    return record


class LabelError(ValueError):
    """A label that parses but lies outside its task's set: the file is wrong, not one row of it."""


def _parse_label(task: Task, raw: str | None) -> int | float:
    column = task.label_column
    if raw is None:
        raise ValueError(f"{column} is missing")
    try:
        number = float(raw)
    except ValueError:
        raise ValueError(f"{column} {raw!r} is not a number") from None
    # The course's conversions: int(x.strip()) for SST, int(float(x)) for Quora, float(x) for STS; a value
    # outside the task's label space (Quora 0.7, SST 5, STS 5.5) is refused rather than truncated into it.
    if task.kind == "regression":
        ok = task.label_range[0] <= number <= task.label_range[1]
    else:
        ok = number in task.labels
    if not ok:
        raise LabelError(f"{column} {raw.strip()!r} is not {task.label_text()}")
    if task.kind == "multiclass":
        try:
            return int(raw.strip())
        except ValueError:
            raise ValueError(f"{column} {raw!r} is not an integer") from None
    return int(number) if task.kind == "binary" else number


def read_task_file(task: str, path: str | Path, labelled: bool = True) -> ExampleList:
    """Parse one course csv of `task`; `labelled=False` for test files (label None, no label column needed).

    Rows that fail to parse (a stray quote swallowing fields, a label that is not a number) are skipped and
    counted, as the course does; a label outside the task's set, an empty file or a file that is not UTF-8
    raises ``ValueError`` naming the file (and line).
    """
    record = task_records.get(task)
    path = Path(path)
    expected = ["id", *record.text_columns, *([record.label_column] if labelled else [])]
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found (a {task} course csv was expected)")
    if not path.is_file():
        raise ValueError(f"{path}: not a file (a {task} course csv was expected)")
    try:
        with open(path, encoding="utf-8", newline="") as fp:
            reader = csv.DictReader(fp, delimiter="\t")
            found = list(reader.fieldnames or [])  # SST test's header `0\t\tid\tsentence` gives ['0', '', 'id', ...]
            if not found:
                raise ValueError(f"{path}: the file is empty (expected a header with columns {expected})")
            if any(c not in found for c in expected):
                raise ValueError(f"{path} line 1: header has columns {found}, expected columns {expected}")
            examples, rows, skipped, reasons = _read_records(record, path, reader, labelled)
            if not rows:
                raise ValueError(f"{path}: the file has a header but no rows (expected one {task} example per line)")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: {utf8_problem(path)}; is it a course csv?") from None
    if skipped:  # expected in the course files (2 rows of quora-dev): a note, not a warning
        log.info("%s: skipped %d malformed row(s) of %d (%s)", path.name, skipped, rows, "; ".join(reasons))
    report = LoadReport((path.name,), rows, skipped, reasons, f"{path.name} ({len(examples):,} usable of {rows:,})")
    return ExampleList(examples, report)


def utf8_problem(path: Path) -> str:
    """Where a file stops being UTF-8: "not UTF-8 text (line 3, byte 27: invalid start byte)"."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        return f"not UTF-8 text (line {line}, byte {err.start}: {err.reason})"
    return "not UTF-8 text"


def _read_records(task: Task, path: Path, reader: csv.DictReader, labelled: bool):
    examples: list[Example] = []
    reasons: list[str] = []
    rows = skipped = 0
    for record in reader:
        rows += 1
        try:
            # A stray quote can swallow later fields, leaving them '' or None (2 rows in quora-dev).
            fields = [record[c] for c in ("id", *task.text_columns)]
            if None in fields:
                raise ValueError("row has too few fields")
            label = _parse_label(task, record[task.label_column]) if labelled else None
        except LabelError as err:
            raise ValueError(f"{path} line {reader.line_num}: {err}") from None
        except ValueError as err:
            skipped += 1
            if len(reasons) < 5:
                reasons.append(f"{path.name} line {reader.line_num}: {err}")
            continue
        texts = tuple(_normalise(task, t) for t in fields[1:])
        examples.append(Example(fields[0].lower().strip(), texts, label))
    return examples, rows, skipped, reasons


# ---------------------------------------------------------------- loaders


def _require(path: Path) -> Path:
    if path.is_file():
        return path
    note = ""
    if path.name in OPTIONAL_FILES:
        note = " This file is not part of the project's shared data; it is used only when a mirror provides it."
    raise FileNotFoundError(
        f"data file {path.name} not found in {path.parent}. Fetch the data with "
        f"`{FETCH_COMMAND}` (or point MTLIB_DATA_DIR at a folder holding it).{note}"
    )


def _train_files(task: Task, root: Path, quora_train: str) -> tuple[list[Path], str | None]:
    """The train files and, for a task read from its train_subsets (the course's Quora without
    quora-train.csv), which subset."""
    full = [root / n for n in task.files["train"]]
    if not task.train_subsets or all(p.is_file() for p in full):  # the whole file wins whenever it is there
        return [_require(p) for p in full], None
    _check("quora_train", quora_train, tuple(task.train_subsets))
    return [_require(root / n) for n in task.train_subsets[quora_train]], quora_train


def _read_files(task: Task, files: list[Path], labelled: bool) -> ExampleList:
    parts = [read_task_file(task.name, f, labelled=labelled) for f in files]
    if len(parts) == 1:
        return parts[0]
    examples = [ex for part in parts for ex in part]
    return ExampleList(
        examples,
        LoadReport(
            tuple(n for p in parts for n in p.report.files),
            sum(p.report.rows for p in parts),
            sum(p.report.skipped for p in parts),
            [r for p in parts for r in p.report.reasons],
        ),
    )


def load_split(
    task: str, split: str, data_dir: str | Path | None = None, quora_train: str = "head+extra"
) -> ExampleList:
    """Examples of one task/split, parsed as the course does; `.report` says what was read and skipped.

    A task with ``train_subsets`` (the course's Quora: quora-train.csv is not in the shared data) reads them
    when its train file is absent (`quora_train`: "head" alone is an unbiased sample; "head+extra" adds rows
    sampled separately by class, 35.6% positive against 37.5% in the head file). A split whose file is absent
    (Quora test) raises FileNotFoundError; check with `split_available` first.
    """
    record = _task_split(task, split)
    root = resolve_data_dir(data_dir)
    files, subset = (
        _train_files(record, root, quora_train)
        if split == "train"
        else ([_require(root / n) for n in record.files[split]], None)
    )
    out = _read_files(record, files, labelled=split != "test")
    if split == "train" and record.train_subsets:
        out.report.source = (
            f"subset {subset} ({len(out):,} usable of {QUORA_TRAIN_FULL_ROWS:,})"
            if subset
            else f"full {files[0].name} ({len(out):,} usable of {out.report.rows:,})"
        )
    return out


def split_files(
    task: str, split: str, data_dir: str | Path | None = None, quora_train: str = "head+extra"
) -> list[Path]:
    """The files ``load_split`` reads for this task and split (what a run's identity checksums)."""
    record = _task_split(task, split)
    root = resolve_data_dir(data_dir)
    if split == "train":
        return _train_files(record, root, quora_train)[0]
    return [_require(root / n) for n in record.files[split]]


def split_available(task: str, split: str, data_dir: str | Path | None = None) -> bool:
    """Whether `load_split(task, split, data_dir)` finds its file(s)."""
    record = _task_split(task, split)
    root = resolve_data_dir(data_dir)
    if split not in record.files:
        return False
    if all((root / n).is_file() for n in record.files[split]):
        return True
    return split == "train" and any(all((root / n).is_file() for n in files) for files in record.train_subsets.values())


def quora_train_source(data_dir: str | Path | None = None, quora_train: str = "head+extra") -> str:
    """What Quora train data a run uses, e.g. "subset head+extra (56,331 usable of 141,506)"."""
    return load_split("para", "train", data_dir, quora_train).report.source


def filter_by_length(examples: Sequence[Example], max_chars: int = 250) -> list[Example]:
    """The original's train-only "top 2%" cut: keep iff the normalised sentences total <= max_chars."""
    return [ex for ex in examples if sum(len(s) for s in ex.sentences) <= max_chars]


def dataset_summary(data_dir: str | Path | None = None, quora_train: str = "head+extra") -> pd.DataFrame:
    """One row per task/split: source, examples, skipped rows, length-filter survivors, labels, mean length."""
    import pandas as pd  # imported here: slow to import, and only the notebooks need it

    rows: list[dict[str, Any]] = []
    for task, split in ((t, sp) for t, record in task_records.course().items() for sp in record.files):
        if not split_available(task, split, data_dir):
            rows.append({"task": task, "split": split, "source": "absent"})
            continue
        ex = load_split(task, split, data_dir, quora_train)
        labels = pd.Series([e.label for e in ex], dtype=float)
        if split == "test":
            label_info = ""
        elif task_records.get(task).kind == "regression":
            label_info = f"mean {labels.mean():.2f}, sd {labels.std():.2f}"
        else:  # class counts, e.g. "0:12627 1:7585"
            label_info = " ".join(f"{k:.0f}:{v}" for k, v in labels.value_counts().sort_index().items())
        rows.append(
            {
                "task": task,
                "split": split,
                "source": ex.report.source,
                "examples": len(ex),
                "skipped": ex.report.skipped,
                "length_filtered": len(filter_by_length(ex)) if split == "train" else None,
                "labels": label_info,
                "mean_chars": round(sum(len("".join(e.sentences)) for e in ex) / len(ex), 1),
            }
        )
    return pd.DataFrame(rows).astype({"examples": "Int64", "skipped": "Int64", "length_filtered": "Int64"})
