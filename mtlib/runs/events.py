"""The one event stream of executing runs: every engine, the notebooks' progress, the panel's live curve and
``make workbook``'s lines read the same named events.

An ``Event`` is ``kind``, the run's ``key`` ("row seed<k>") and data. The executor's own kinds say where a run
is: ``started`` (attempt, pid), ``found`` (finished before: not trained again; its dev mean), ``finished``
(run_dir, dev mean) and ``failed`` (one line). While a run trains, each row the trainer writes to its
``history.jsonl`` is an event too, named for what happened: ``run_started`` (device, precision: a 'start' row),
``trained`` (a 'train' row), ``evaluated`` (a dev evaluation at an epoch's end), ``gradients`` (a conflict
diagnostic) and ``final_evaluation``; ``data["row"]`` holds the row itself. Worker processes and Ray tasks send
only ``evaluated`` across (the live line needs no more); an engine in this process sends every row.

A listener is any ``callable(event)``. ``ProgressFile`` writes events as JSON lines to the file
``$MTLIB_PROGRESS_FILE`` names (the papermill driver gives each notebook kernel its own), and ``follow`` reads
such a file as it grows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

RUN_KINDS = ("started", "found", "finished", "failed")
ROW_KINDS = {
    "start": "run_started",
    "train": "trained",
    "eval": "evaluated",
    "grad": "gradients",
    "final": "final_evaluation",
}
KINDS = (*RUN_KINDS, *ROW_KINDS.values())
PROGRESS_ENV = "MTLIB_PROGRESS_FILE"


@dataclasses.dataclass(frozen=True)
class Event:
    kind: str
    key: str
    data: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"event kind {self.kind!r}: expected one of {', '.join(KINDS)}")

    @property
    def row(self) -> dict | None:
        """The history row of a row event (None for the executor's own kinds)."""
        return self.data.get("row")

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "key": self.key, **self.data})

    @classmethod
    def from_json(cls, line: str) -> "Event":
        data = json.loads(line)
        return cls(data.pop("kind"), data.pop("key"), data)


Listener = Callable[[Event], None]


def row_event(key: str, row: dict) -> Event | None:
    """The event of one history row (None for a kind the stream does not name)."""
    kind = ROW_KINDS.get(row.get("type"))
    return Event(kind, key, {"row": row}) if kind else None


def eval_summary(event: Event) -> str | None:
    """The live-line text of an ``evaluated`` event: phase, epoch and dev mean."""
    row = event.row or {}
    if event.kind != "evaluated":
        return None
    return f"phase {row.get('phase')} epoch {row.get('epoch')} dev {row.get('mean', float('nan')):.3f}"


class ProgressFile:
    """A listener that appends each event as one JSON line to ``path`` (with the run's name, seed, planned
    epochs and, for an ``evaluated`` event, how many of them are done), for ``follow`` in another process.
    Row events other than ``evaluated`` are left out: the reader prints epochs, not steps."""

    def __init__(self, path: str | Path, runs: dict[str, Any]):
        self.path, self.runs, self.epochs_done = Path(path), runs, {}

    @classmethod
    def from_environment(cls, runs: dict[str, Any]) -> "ProgressFile | None":
        path = os.environ.get(PROGRESS_ENV)
        return cls(path, runs) if path else None

    def __call__(self, event: Event) -> None:
        if event.kind in ROW_KINDS.values() and event.kind != "evaluated":
            return
        run = self.runs.get(event.key)
        data = {k: v for k, v in event.data.items() if k != "row"}
        if run is not None:
            cfg = run.cfg
            data |= {"name": cfg.name, "seed": cfg.seed, "epochs_total": sum(p.epochs for p in cfg.phase_configs())}
        if event.kind == "evaluated":
            done = self.epochs_done[event.key] = self.epochs_done.get(event.key, 0) + 1
            row = event.row
            data |= {"phase": row.get("phase_name", ""), "epoch": row["epoch"], "epochs_done": done}
            data["mean"] = row.get("mean")
        with open(self.path, "a", encoding="utf-8") as f:  # one short line per write: no reader sees half of one
            f.write(json.dumps({"kind": event.kind, "key": event.key, **data}) + "\n")


def follow(path: Path, on_event: Callable[[dict], None], stop: threading.Event, poll_s: float = 0.5) -> None:
    """Call ``on_event`` for each line appended to ``path`` until ``stop`` is set (then read what is left)."""
    pos = 0
    while True:
        finished = stop.is_set()
        if path.exists():
            with open(path, encoding="utf-8") as f:
                f.seek(pos)
                for line in f:
                    if not line.endswith("\n"):
                        break
                    pos += len(line.encode("utf-8"))
                    on_event(json.loads(line))
        if finished:
            return
        stop.wait(poll_s)
