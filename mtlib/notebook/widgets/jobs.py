"""Panel runs off the kernel's main thread: one worker thread per kernel runs them one at a time, in order.

One at a time because runs share the machine's cores; a run asked for while another trains waits as
"queued". The notebook stays usable meanwhile, and the kernel's Idle/Busy status stays honest (it is idle
for cells while a panel run trains). A job's states: queued -> running -> done | failed: <reason> | stopped.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from mtlib.train.stop import StopRequested, stoppable

STATES = ("queued", "running", "done", "failed", "stopped")


class Job:
    """``work(callback)`` to run on the worker; ``on_state(job)`` is called (on the worker) at every change."""

    def __init__(
        self,
        work: Callable[[Callable[[dict], None]], Any],
        on_row: Callable[[dict], None],
        on_state: Callable[["Job"], None],
    ):
        self.work, self.on_row, self.on_state = work, on_row, on_state
        self.stop_event = threading.Event()
        self.finished = threading.Event()
        self.state, self.reason, self.result, self.error = "queued", "", None, None
        self.ahead = 0  # runs before this one when it was queued

    def _set(self, state: str, reason: str = "") -> None:
        self.state, self.reason = state, reason
        try:
            self.on_state(self)
        finally:
            if state in ("done", "failed", "stopped"):
                self.finished.set()

    def _run(self) -> None:
        if self.stop_event.is_set():
            return self._set("stopped", "before it started")
        self._set("running")
        try:
            self.result = self.work(stoppable(self.on_row, self.stop_event))
        except StopRequested:
            return self._set("stopped", "Run again resumes from the last finished epoch")
        except BaseException as e:  # noqa: BLE001 - shown in the panel; the worker goes on
            self.error = e
            return self._set("failed", "".join(traceback.format_exception_only(type(e), e)).strip())
        self._set("done")

    @property
    def active(self) -> bool:
        return not self.finished.is_set()

    def stop(self) -> None:
        """Stop at the trainer's next logged row (running) or before it starts (queued)."""
        self.stop_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)


class Worker:
    """The kernel's one panel-run thread, started on the first job."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: list[Job] = []
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def submit(self, job: Job) -> Job:
        with self._lock:
            job.ahead = len(self._jobs)
            self._jobs.append(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="mtlib-panel-runs", daemon=True)
                self._thread.start()
            self._wake.notify()
        job._set("queued")
        return job

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._jobs:
                    self._wake.wait()
                job = self._jobs[0]
            try:
                job._run()
            except Exception:  # noqa: BLE001 - a broken on_state must not kill the worker
                traceback.print_exc()
                job.finished.set()
            finally:
                with self._lock:
                    self._jobs.pop(0)


WORKER = Worker()
