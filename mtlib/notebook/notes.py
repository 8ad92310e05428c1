"""Expected data notes (a course file's skipped malformed rows) as one quiet stdout line, not a red box.

``mtlib.data`` logs them at INFO (``parse.read_task_file``); Python shows INFO nowhere by default, and a
handler on stderr would draw a red box in every notebook cell. This handler writes ``[data] <note>`` to
whatever ``sys.stdout`` is when the note is logged (the running cell's output in a kernel), each distinct
note once per process (the same file is read by every run of a notebook). Warnings and errors are not
touched: they still reach Python's own handlers, loud. Installed by every notebook's first call
(``parameters.check_parameters``) in a notebook kernel (a terminal's stdout stays the command's output, e.g. ``mtlib score``), unless the program
has configured the ``mtlib.data`` logger itself.
"""

from __future__ import annotations

import logging
import sys

LOGGER = "mtlib.data"


class QuietNotes(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.INFO)
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno == logging.INFO and record.getMessage() not in self.seen

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.seen.add(message)
        try:
            print(f"[data] {message}", file=sys.stdout, flush=True)
        except Exception:  # noqa: BLE001 - a closed stream must not break a data load
            self.handleError(record)


def show_data_notes() -> QuietNotes | None:
    """Install the quiet handler once (idempotent; left alone when the logger already has handlers)."""
    log = logging.getLogger(LOGGER)
    if log.handlers:
        return
    handler = QuietNotes()
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler
