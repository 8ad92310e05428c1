"""The engine that trains in this process, one run after another (notebooks, the panel, ``sweep`` without
``--workers``). Every history row the trainer writes reaches the event stream, so a notebook's panel can
draw its curve live. An interruption (KeyboardInterrupt, the panel's ``StopRequested``) goes through to the
executor, which raises it; any other exception fails the run in one line and keeps the exception itself for
the caller (``Sweep.raise_failures`` chains it)."""

from __future__ import annotations

import os

from mtlib.runs.events import Event, Listener, row_event
from mtlib.runs.executor import Run, finish_event, one_line
from mtlib.train.stop import StopRequested


class LocalEngine:
    def __init__(self):
        self.queued: Run | None = None

    def free(self) -> int:
        return 0 if self.queued else 1

    def busy(self) -> bool:
        return self.queued is not None

    def submit(self, run: Run, emit: Listener) -> None:
        self.queued = run

    def wait(self, emit: Listener) -> None:
        from mtlib.train.trainer import run as train

        r, self.queued = self.queued, None
        emit(Event("started", r.key, {"pid": os.getpid()}))

        def on_row(row: dict) -> None:
            event = row_event(r.key, row)
            if event is not None:
                emit(event)

        try:
            run_dir = train(r.cfg, callback=on_row)
        except StopRequested:
            raise
        except Exception as err:  # noqa: BLE001 - one run's failure is reported; the others go on
            r.exception = err
            emit(Event("failed", r.key, {"error": one_line(err)}))
            return
        emit(finish_event(r, run_dir))

    def close(self) -> None:
        self.queued = None
