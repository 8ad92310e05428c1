"""What a task is, declared as data: its files and columns, input kind, label space, loss, metric, prediction
format, display name and colour. Nothing else in mtlib names a task.

The course's three tasks live in ``params/tasks.yaml``; a config's ``task_file`` adds tasks of its own
(CONTRIBUTING.md, "Add a task"). ``get(name)`` finds a task among the course's and every task file a config
registered in this process; a name may not be declared twice with different content.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

COURSE_FILE = Path(__file__).resolve().parent.parent / "params" / "tasks.yaml"
INPUTS = ("single", "pair")
KINDS = ("multiclass", "binary", "regression")
METRICS = ("accuracy", "pearson")
NORMALISE = ("lower_strip", "course")
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Task:
    name: str
    display: str  # in tables and plots ("SST-5")
    colour: str  # in plots
    input: Literal["single", "pair"]
    kind: Literal["multiclass", "binary", "regression"]  # the loss and the prediction follow from it
    metric: Literal["accuracy", "pearson"]
    text_columns: tuple[str, ...]
    label_column: str
    prediction_column: str  # the prediction file's header
    files: dict[str, tuple[str, ...]]  # split -> file names in the data folder
    labels: tuple[int, ...] = ()  # class ids (multiclass, binary)
    label_range: tuple[float, float] | None = None  # regression
    class_names: tuple[str, ...] = ()
    normalise: Literal["lower_strip", "course"] = "course"
    augment: str | tuple[int, ...] = "none"  # EDA: "minority" (classes below the majority), class ids, "none"
    train_subsets: dict[str, tuple[str, ...]] = field(default_factory=dict)  # train files when files["train"] is absent

    @property
    def out_dim(self) -> int:
        return len(self.labels) if self.kind == "multiclass" else 1

    @property
    def pair(self) -> bool:
        return self.input == "pair"

    @property
    def metric_name(self) -> str:  # "SST-5 acc.", "STS-B r"
        return f"{self.display} {'acc.' if self.metric == 'accuracy' else 'r'}"

    def label_text(self) -> str:
        """The label space in words, for error messages."""
        if self.kind == "regression":
            lo, hi = self.label_range
            return f"a number in {_num(lo)}..{_num(hi)}"
        return (
            " or ".join(map(str, self.labels))
            if len(self.labels) == 2
            else "one of " + ", ".join(map(str, self.labels))
        )

    def record(self) -> dict:
        """Plain data (what a run id hashes for a task that is not the course's)."""
        return json.loads(json.dumps(asdict(self)))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class TaskError(ValueError):
    """A task declaration that cannot work: one line naming the file and key."""


_DECLARED: dict[str, tuple[Task, str]] = {}  # name -> (task, the file that declared it)


def read_task_file(path: str | Path) -> dict[str, Task]:
    """The tasks a YAML file declares; ``TaskError`` naming the file and key for a bad declaration."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise TaskError(f"{path}: cannot read the task file ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise TaskError(f"{path}: YAML syntax error: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict) or not data:
        raise TaskError(f"{path}: expected a mapping of task names to their declarations")
    return {str(name): _task(path, str(name), spec) for name, spec in data.items()}


def _task(path: Path, name: str, spec: Any) -> Task:
    def bad(key: str, expected: str) -> TaskError:
        got = spec.get(key) if isinstance(spec, dict) else spec
        return TaskError(f"{path}: task {name!r} key {key!r} has value {got!r}; expected {expected}")

    if not name.isidentifier():
        raise TaskError(f"{path}: task name {name!r} must be a plain identifier (it names files and columns)")
    if not isinstance(spec, dict):
        raise bad("", "a mapping of keys")
    known = set(Task.__dataclass_fields__) - {"name"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise TaskError(f"{path}: task {name!r} has unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
    for key in (
        "display",
        "colour",
        "input",
        "kind",
        "metric",
        "text_columns",
        "label_column",
        "prediction_column",
        "files",
    ):
        if key not in spec:
            raise TaskError(f"{path}: task {name!r} is missing the key {key!r}")
    for key, allowed in (("input", INPUTS), ("kind", KINDS), ("metric", METRICS), ("normalise", NORMALISE)):
        if key in spec and spec[key] not in allowed:
            raise bad(key, " or ".join(allowed))
    columns = spec["text_columns"]
    if not (isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)):
        raise bad("text_columns", "a list of column names")
    if len(columns) != (2 if spec["input"] == "pair" else 1):
        raise bad("text_columns", f"{2 if spec['input'] == 'pair' else 1} column(s) for input {spec['input']!r}")
    files = spec["files"]
    if not (
        isinstance(files, dict)
        and {"train", "dev"} <= set(files)
        and set(files) <= set(SPLITS)
        and all(isinstance(v, list) and v and all(isinstance(f, str) for f in v) for v in files.values())
    ):
        raise bad("files", "a mapping with train and dev (and test) to lists of file names")
    labels, label_range = spec.get("labels", []), spec.get("label_range")
    if spec["kind"] == "regression":
        if not (
            isinstance(label_range, list)
            and len(label_range) == 2
            and all(isinstance(x, (int, float)) for x in label_range)
            and label_range[0] < label_range[1]
        ):
            raise bad("label_range", "[low, high] for a regression task")
        if spec["metric"] != "pearson":
            raise bad("metric", "pearson for a regression task")
    else:
        need = 2 if spec["kind"] == "binary" else 3
        if not (isinstance(labels, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in labels)):
            raise bad("labels", "a list of class ids (integers)")
        if spec["kind"] == "binary" and sorted(labels) != [0, 1]:
            raise bad("labels", "[0, 1] for a binary task")
        if spec["kind"] == "multiclass" and (len(labels) < need or sorted(labels) != list(range(len(labels)))):
            raise bad("labels", "0, 1, ..., K-1 (K >= 3) for a multiclass task (use kind: binary for two)")
        if spec["metric"] != "accuracy":
            raise bad("metric", "accuracy for a classification task")
    names = spec.get("class_names", [])
    if names and len(names) != len(labels):
        raise bad("class_names", f"one name per label ({len(labels)})")
    augment = spec.get("augment", "none")
    if not (augment in ("minority", "none") or (isinstance(augment, list) and set(augment) <= set(labels))):
        raise bad("augment", "minority, none, or a list of the task's class ids")
    if spec["kind"] == "regression" and augment != "none":
        raise bad("augment", "none for a regression task (EDA balances classes)")
    subsets = spec.get("train_subsets", {})
    if not (isinstance(subsets, dict) and all(isinstance(v, list) and v for v in subsets.values())):
        raise bad("train_subsets", "a mapping of option names to lists of file names")
    return Task(
        name=name,
        display=str(spec["display"]),
        colour=str(spec["colour"]),
        input=spec["input"],
        kind=spec["kind"],
        metric=spec["metric"],
        text_columns=tuple(columns),
        label_column=str(spec["label_column"]),
        prediction_column=str(spec["prediction_column"]),
        files={k: tuple(v) for k, v in files.items()},
        labels=tuple(labels),
        label_range=tuple(float(x) for x in label_range) if label_range else None,
        class_names=tuple(names),
        normalise=spec.get("normalise", "course"),
        augment=tuple(augment) if isinstance(augment, list) else augment,
        train_subsets={k: tuple(v) for k, v in subsets.items()},
    )


def course() -> dict[str, Task]:
    """The course's tasks, in their order (sst, para, sts)."""
    if not _course:
        _course.update(read_task_file(COURSE_FILE))
        for name, task in _course.items():
            _DECLARED.setdefault(name, (task, str(COURSE_FILE)))
    return _course


_course: dict[str, Task] = {}


def register(path: str | Path) -> dict[str, Task]:
    """Read a task file and make its tasks known to ``get``; a name already declared with other content (a
    course task, or another file's) is refused."""
    course()
    tasks = read_task_file(path)
    for name, task in tasks.items():
        known = _DECLARED.get(name)
        if known is not None and known[0] != task:
            raise TaskError(
                f"{path}: task {name!r} is already declared differently in {known[1]}; give it another name"
            )
        _DECLARED[name] = (task, str(path))
    return tasks


def get(name: str) -> Task:
    course()
    if name not in _DECLARED:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(_DECLARED)} (declare others in a task_file)")
    return _DECLARED[name][0]


def known() -> tuple[str, ...]:
    """Every task declared in this process (the course's and those of registered task files)."""
    course()
    return tuple(_DECLARED)


def available(task_file: str | Path | None) -> tuple[str, ...]:
    """The tasks a config may name: the course's and its own task file's (not another config's: a config is
    valid or not whatever else the process has read)."""
    extra = tuple(read_task_file(resolve(task_file))) if task_file else ()
    return (*course(), *(n for n in extra if n not in course()))


def resolve(path: str | Path) -> Path:
    """A task file's path: relative paths are relative to the repository root, as every config path."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else COURSE_FILE.parents[1] / path


def declarations_digest(names: tuple[str, ...]) -> dict[str, str]:
    """For the run id: the content of each task that is not the course's (course tasks keep the ids they had)."""
    return {
        n: hashlib.sha256(json.dumps(get(n).record(), sort_keys=True).encode()).hexdigest()[:16]
        for n in names
        if n not in course()
    }
