"""The records of a run directory's result files: one per history.jsonl row kind, and metrics.json.

The trainer builds these records and writes ``record.to_json()``; the readers (``mtlib.rundir.read``) check
every row and metrics.json against them, so a malformed file is one line naming the file, the line and the
field, not a ``KeyError`` three modules later. Key order is the order the fields are declared in: the files
read the same as before the records existed, but for the version key.

Versions (``SCHEMA``): files without a version key are version 1, as the trainer wrote them before these
records; from version 2 the start row and metrics.json carry ``"schema": 2``. In a version-2 file every field
a record declares must be there (but the optional ones: a row's ``probabilities``, ``beta``,
``loss_weights``); in a version-1 file, and in the hand-made ones tests and notebooks write, a missing field
is None and the fields that are there are checked all the same. Keys a record does not declare are kept: in
eval and final rows they are the scores, keyed by task name (tasks are data, ``mtlib.tasks``) and "mean";
elsewhere they go to ``extra`` and are written back last.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

SCHEMA = 2  # what this code writes; a file without a version key is version 1


class SchemaError(ValueError):
    """A row or file that does not fit its record; the message is one line naming the file, line and field."""


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _map(check):
    return lambda v: isinstance(v, dict) and all(isinstance(k, str) and check(x) for k, x in v.items())


# check name -> (test, what the message says a value should be). "score": NaN is written as null.
CHECKS = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "number": (_number, "a number"),
    "score": (lambda v: v is None or _number(v), "a number or null"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "object?": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "scores": (_map(lambda x: x is None or _number(x)), "an object of numbers (null for NaN)"),
    "counts": (_map(lambda x: isinstance(x, int) and not isinstance(x, bool)), "an object of integers"),
}


def _req(check: str):
    """A field the writer always sets (a version-2 file must have it)."""
    return field(metadata={"check": check})


def _opt(check: str):
    """A field some rows carry and others leave out (not written when None)."""
    return field(default=None, metadata={"check": check, "optional": True})


def _version():
    """The file's schema version: SCHEMA when written, 1 when a file has none."""
    return field(default=SCHEMA, metadata={"check": "int", "version": True})


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(kw_only=True)
class Record:
    REST: ClassVar[str] = "extra"  # the field that takes the keys no field declares
    REST_CHECK: ClassVar[str | None] = None  # what each of those must be (None: anything)
    WHAT: ClassVar[str] = "record"

    def to_json(self) -> dict:
        """The dict written to the file, keys in declared order; optional fields left out when None."""
        out: dict = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == self.REST:
                out.update(value)
            elif not (value is None and f.metadata.get("optional")) and not (f.metadata.get("version") and value == 1):
                out[f.name] = value  # (version 1 files have no version key)
        return out

    @classmethod
    def from_json(cls, data, version: int = SCHEMA, where: str = "") -> Record:
        """The record of ``data`` (a dict read from a file), checked; SchemaError in one line if it does not fit."""
        where = f"{where}: " if where else ""
        if not isinstance(data, dict):
            raise SchemaError(f"{where}expected a JSON object ({cls.WHAT}), got {_short(data)}")
        declared = {f.name: f for f in fields(cls) if f.name != cls.REST}
        values: dict = {}
        rest: dict = {}
        for key, value in data.items():
            f = declared.get(key)
            check = f.metadata["check"] if f is not None else cls.REST_CHECK
            if check is not None and not CHECKS[check][0](value):
                raise SchemaError(f"{where}{cls.WHAT}: field {key!r} should be {CHECKS[check][1]}, got {_short(value)}")
            (values if f is not None else rest)[key] = value
        for name, f in declared.items():
            if name in values:
                continue
            if f.metadata.get("version"):
                values[name] = 1
            elif version >= 2 and not f.metadata.get("optional"):
                raise SchemaError(f"{where}{cls.WHAT}: field {name!r} is missing")
            else:
                values[name] = None
        return cls(**values, **{cls.REST: rest})


# ---------------------------------------------------------------------------------------------- history rows
@dataclass(kw_only=True)
class HistoryRow(Record):
    """One line of history.jsonl: ``wall`` (seconds into the run) and ``type`` first, then the kind's fields."""

    KIND: ClassVar[str] = ""
    WHAT = "history row"
    wall: float | None = _opt("number")  # set by the trainer as it writes the row

    def to_json(self) -> dict:
        out = super().to_json()
        head = {"wall": out.pop("wall")} if "wall" in out else {}
        return {**head, "type": self.KIND, **out}

    @classmethod
    def from_json(cls, data, version: int = SCHEMA, where: str = "") -> HistoryRow:
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != "type"}
        return super().from_json(data, version, where)


@dataclass(kw_only=True)
class StartRow(HistoryRow):
    KIND, WHAT = "start", "'start' row"
    schema: int = _version()  # the file's version (its other rows carry none)
    run_id: str = _req("str")
    config_hash: str = _req("str")
    device: str = _req("str")
    precision: str = _req("str")
    params: dict = _req("counts")  # parameter counts: encoder, head_<task>, pals, total, trainable
    data: dict = _req("object")  # the data's provenance: per task what was read, kept and skipped
    extra: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class TrainRow(HistoryRow):
    KIND, WHAT = "train", "'train' row"
    phase: int = _req("int")
    epoch: int = _req("int")
    step: int = _req("int")
    examples_seen: int = _req("int")
    lr: float = _req("number")
    loss: dict = _req("scores")  # mean training loss per task since the last train row
    extra: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class EvalRow(HistoryRow):
    """The dev-subsample evaluation at an epoch's end; the scores (per task and "mean") are its other keys."""

    KIND, WHAT, REST, REST_CHECK = "eval", "'eval' row", "scores", "score"
    phase: int = _req("int")
    phase_name: str = _req("str")
    epoch: int = _req("int")
    examples_seen: int = _req("int")
    scores: dict = field(default_factory=dict)
    task_counts: dict = _req("counts")  # batches drawn per task in the epoch
    improved: bool = _req("bool")
    probabilities: dict | None = _opt("scores")  # the sampler's task probabilities (PAL samplers)


@dataclass(kw_only=True)
class GradRow(HistoryRow):
    """The conflict diagnostics of one combined update (``conflict_stats``)."""

    KIND, WHAT = "grad", "'grad' row"
    epoch: int = _req("int")
    examples_seen: int = _req("int")
    cosine: list = _req("list")  # T x T
    pairs: dict = _req("scores")  # {"a|b": cosine}
    conflict_share: float = _req("number")
    norms: dict = _req("scores")
    loss_weights: dict | None = _opt("scores")  # a loss weighting's multipliers
    counts: dict = _req("counts")  # batches per task in the update
    beta: float | None = _opt("number")  # a compromise step's n_t^beta exponent
    extra: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class FinalRow(HistoryRow):
    """The final dev evaluation (metrics.json's ``dev``); the scores are its keys."""

    KIND, WHAT, REST, REST_CHECK = "final", "'final' row", "scores", "score"
    scores: dict = field(default_factory=dict)


ROWS = {cls.KIND: cls for cls in (StartRow, TrainRow, EvalRow, GradRow, FinalRow)}


def version_of(data: dict, where: str = "") -> int:
    """The version a start row or metrics.json declares (1 without one); one newer than this code reads is refused."""
    version = data.get("schema", 1)
    if not CHECKS["int"][0](version) or not 1 <= version <= SCHEMA:
        raise SchemaError(
            f"{where}: schema {_short(version)} is not one this mtlib reads (1 to {SCHEMA}); a newer mtlib wrote it"
        )
    return version


def parse_row(data, version: int = SCHEMA, where: str = "") -> HistoryRow:
    """The record of one history row, by its ``type``."""
    kind = data.get("type") if isinstance(data, dict) else None
    cls = ROWS.get(kind) if isinstance(kind, str) else None
    if cls is None and isinstance(data, dict):
        raise SchemaError(f"{where}: field 'type' should be one of {', '.join(ROWS)}, got {_short(kind)}")
    return (cls or HistoryRow).from_json(data, version, where)


# ---------------------------------------------------------------------------------------------- metrics.json
@dataclass(kw_only=True)
class Metrics(Record):
    """A finished run's metrics.json (written last: its presence means the run is complete)."""

    WHAT = "metrics"
    schema: int = _version()
    name: str = _req("str")
    seed: int = _req("int")
    run_id: str = _req("str")
    config_hash: str = _req("str")
    backbone: str = _req("str")
    dev: dict = _req("scores")  # final dev scores per task and "mean"
    dev_split: str = _req("str")  # "full" or "subsample"
    dev_half: str | None = _opt("str")  # "report": dev holds the report half's scores (mtlib.data.dev_halves)
    dev_full: dict | None = _opt("scores")  # then all of the final dev rows' scores (beside the paper's)
    best_epoch: int = _req("int")  # of the last phase
    best_dev_subsample_mean: float | None = _req("score")
    examples_seen: int = _req("int")
    train_seconds: float = _req("number")
    final_eval_seconds: float = _req("number")
    device: str = _req("str")
    precision: str = _req("str")
    data: dict = _req("object")  # provenance, as in the start row
    data_sha256: dict = _req("object")
    params: dict = _req("counts")
    resumed: list = _req("list")  # [{phase, epoch}] of each resume
    shared_phases: dict | None = _req("object?")  # the leading phases adopted from another run
    code: dict = _req("object")  # mtlib version, commit, dirty
    speed: dict = _req("object")  # per phase: examples/s, tokens/s, ...
    precision_reason: str = _req("str")
    extra: dict = field(default_factory=dict)
