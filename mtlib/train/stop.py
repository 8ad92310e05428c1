"""Stopping a run from outside the trainer: its callback raises ``StopRequested``.

The trainer lets the exception through like any other: the lock is released, and the run directory keeps
``last.pt`` of the last finished epoch (written before that epoch's callback), so the same config run again
resumes from there. The callback sees a row every ``log_every`` updates, which bounds how long a stop takes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class StopRequested(Exception):
    """A person asked the run to stop (the panel's Stop button); not a failure."""


def stoppable(callback: Callable[[dict], None] | None, stop: threading.Event) -> Callable[[dict], None]:
    """``callback`` that raises StopRequested once ``stop`` is set (checked after each row is handled)."""

    def on_row(row: dict) -> None:
        if callback is not None:
            callback(row)
        if stop.is_set():
            raise StopRequested("stopped on request")

    return on_row
