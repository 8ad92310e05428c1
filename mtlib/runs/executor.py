"""The one executor of "train these runs, parents first": notebooks, the panel, ``python -m mtlib sweep``,
``make workbook`` and every engine go through ``execute``.

One failure semantics, whatever the engine:

- a run already finished is ``found`` and not trained again (its metrics.json reads);
- a run starts when its parents (``init_from``) are done; a run whose parent failed fails unstarted, and so does
  one whose parent is not part of the plan;
- a run that raises, or whose worker is lost, fails with one line; the others go on;
- an interruption (Ctrl-C, SIGTERM, the panel's Stop) stops what was started (each run keeps its last.pt, so the
  same call resumes it) and is raised again; ``interrupted_at`` says how far the runs got.

An engine trains what it is given: ``free()`` says how many runs it can start now, ``submit(run, emit)`` starts
one, ``wait(emit)`` blocks until a submitted run ends (emitting its events, ``finished`` or ``failed`` last),
``close()`` stops what is still running. ``mtlib.runs.local`` (this process), ``mtlib.runs.pool`` (worker
processes) and ``mtlib.runs.ray_engine`` (Ray tasks) are the three.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from mtlib.config.run_config import RunConfig, resolve_path
from mtlib.rundir import read_metrics
from mtlib.runs.events import Event, Listener, eval_summary

STATES = ("pending", "running", "done", "failed")


@dataclasses.dataclass
class Run:
    """One (row, seed) of a plan and where it stands."""

    key: str  # "row seed<k>"
    cfg: RunConfig
    parents: list[str]
    state: str = "pending"
    attempts: int = 0  # starts seen (a retried worker counts again)
    progress: str = ""  # the last dev evaluation it reported
    pid: int | None = None
    error: str = ""
    run_dir: str = ""
    dev_mean: float | None = None
    found: bool = False  # finished before this execution: not trained again
    exception: BaseException | None = dataclasses.field(default=None, repr=False)  # an in-process failure's own


class Engine(Protocol):
    def free(self) -> int: ...
    def submit(self, run: Run, emit: Listener) -> None: ...
    def wait(self, emit: Listener) -> None: ...
    def busy(self) -> bool: ...
    def close(self) -> None: ...


class RunsFailed(RuntimeError):
    """Some runs of an execution failed (a notebook's call raises it after the others finished)."""


class Sweep:
    """The runs of an execution and their states, kept current from the event stream; a live line in the
    terminal (``show``) and a table at the end."""

    def __init__(self, runs: Iterable[Run], listeners: Iterable[Listener] = (), show: bool = True):
        self.runs = {r.key: r for r in runs}
        self.listeners, self.show = list(listeners), show
        self._last_line = ""

    def counts(self) -> dict[str, int]:
        return {s: sum(r.state == s for r in self.runs.values()) for s in STATES}

    @property
    def failed(self) -> list[Run]:
        return [r for r in self.runs.values() if r.state == "failed"]

    def emit(self, event: Event) -> None:
        """Apply ``event`` to its run's state, then tell every listener."""
        r = self.runs[event.key]
        if event.kind == "started":
            r.state, r.attempts, r.pid, r.progress = "running", r.attempts + 1, event.data.get("pid"), ""
        elif event.kind in ("finished", "found"):
            r.state, r.run_dir, r.dev_mean = "done", event.data["run_dir"], event.data.get("mean")
            r.found = event.kind == "found"
        elif event.kind == "failed":
            r.state, r.error = "failed", event.data["error"]
        elif event.kind == "evaluated":
            r.progress = eval_summary(event) or r.progress
        for listener in self.listeners:
            listener(event)
        if event.kind in ("started", "found", "finished", "failed", "evaluated"):
            self._print_line()

    def _print_line(self) -> None:
        line = (
            "[sweep] "
            + ", ".join(f"{n} {s}" for s, n in self.counts().items())
            + "".join(f" | {r.key}: {r.progress or 'started'}" for r in self.runs.values() if r.state == "running")
        )
        if self.show and line != self._last_line:
            print(line, file=sys.stderr, flush=True)
        self._last_line = line

    def table(self):
        return runs_table(self.runs.values())

    def summary(self) -> str:
        lines = [
            f"{r.key:32s} {r.state:8s} attempts {r.attempts}  "
            + (f"dev mean {r.dev_mean:.4f}  {r.run_dir}" if r.state == "done" and r.dev_mean is not None else r.error)
            for r in self.runs.values()
        ]
        counts = self.counts()
        return "\n".join([*lines, f"[sweep] {counts['done']} done, {counts['failed']} failed of {len(self.runs)}"])

    def raise_failures(self) -> None:
        """``RunsFailed`` naming every failed run (chained to the first in-process exception, if any)."""
        if self.failed:
            first = next((r.exception for r in self.failed if r.exception is not None), None)
            raise RunsFailed("; ".join(f"{r.key}: {r.error}" for r in self.failed)) from first


def execute(runs: list[Run], engine: Engine, listeners: Iterable[Listener] = (), show: bool = True) -> Sweep:
    """Train ``runs`` (parents listed before children) on ``engine``; returns the finished Sweep (failed runs
    are in ``sweep.failed``; nothing is raised for them). An interruption stops the engine and is raised."""
    sweep = Sweep(runs, listeners, show)
    pending, looked_up, keys = list(sweep.runs.values()), set(), {}
    try:
        while pending or engine.busy():
            while blocked := [r for r in pending if _failed_parent(sweep, r)]:  # down to grandchildren
                for r in blocked:
                    pending.remove(r)
                    sweep.emit(Event("failed", r.key, {"error": f"parent {_failed_parent(sweep, r)} failed"}))
            while unseen := [r for r in pending if _parents_done(sweep, r) and r.key not in looked_up]:
                for r in unseen:  # a run found finished makes its children ready: look again
                    looked_up.add(r.key)
                    metrics_dir = finished_dir(r.cfg)
                    if metrics_dir is not None:
                        pending.remove(r)
                        sweep.emit(Event("found", r.key, {"run_dir": str(metrics_dir), "mean": _mean(metrics_dir)}))
            while engine.free() > 0 and (ready := [r for r in pending if _parents_done(sweep, r)]):
                running = [r for r in sweep.runs.values() if r.state == "running"]
                r = order(ready, running, keys)[0]  # again after each hand-out: what runs now changes it
                pending.remove(r)
                engine.submit(r, sweep.emit)
            if engine.busy():
                engine.wait(sweep.emit)
            elif pending:  # nothing runs and nothing can start: parents outside the plan
                for r in pending:
                    sweep.emit(Event("failed", r.key, {"error": "a parent is not part of the sweep"}))
                pending.clear()
    finally:
        engine.close()
    if show:
        print(sweep.summary(), file=sys.stderr, flush=True)
    return sweep


def runs_table(runs: Iterable[Run]):
    """One row per run: state, attempts, dev mean, run directory, error (a pandas DataFrame)."""
    import pandas as pd

    fields = ("state", "attempts", "dev_mean", "run_dir", "error")
    return pd.DataFrame([{"run": r.key, **{f: getattr(r, f) for f in fields}} for r in runs])


def finished_dir(cfg: RunConfig) -> Path | None:
    """The run directory of ``cfg`` when its run already finished (its metrics.json reads), else None."""
    from mtlib.train.identity import run_dir_for  # data checksums are cached: the trainer's own look-up is free

    run_dir = run_dir_for(cfg)
    try:
        read_metrics(run_dir)
    except (OSError, ValueError):  # none yet, or one that does not read (the run itself says why)
        return None
    return run_dir


def order(ready: list[Run], running: list[Run], keys: dict | None = None) -> list[Run]:
    """The ready runs in the order to start them: the most planned updates first, so a sweep does not end on a
    long run while the other workers idle; but a run whose first phase a running run is training, and has not
    handed over yet, after the others: it then adopts that run's state (``mtlib.train.shared_phases``) instead
    of training the same phase beside it. ``keys`` caches each run's first-phase key (an identity look-up)."""
    from mtlib.train.shared_phases import first_phase_key, state_path

    keys = {} if keys is None else keys

    def first_phase(r: Run) -> str | None:
        if r.key not in keys:
            keys[r.key] = first_phase_key(r.cfg)
        return keys[r.key]

    busy = {k for r in running if (k := first_phase(r)) and not state_path(r.cfg, k).is_file()}
    return sorted(ready, key=lambda r: (first_phase(r) in busy, -planned_updates(r.cfg)))


def planned_updates(cfg: RunConfig) -> int:
    return sum(p.epochs * p.batches_per_epoch for p in cfg.phase_configs())


def finish_event(run: Run, run_dir: str | Path) -> Event:
    return Event("finished", run.key, {"run_dir": str(run_dir), "mean": _mean(Path(run_dir))})


def interrupted_at(runs: Iterable[Run], what: str = "sweep") -> str:
    """The ``interrupted:`` line's text: how far the runs got, and that they resume from their last.pt."""
    from mtlib.runs.interrupts import RESUME

    runs = list(runs)
    keys = {s: [r.key for r in runs if r.state == s] for s in STATES}
    running = ", ".join(keys["running"][:3]) + (", ..." if len(keys["running"]) > 3 else "")
    counts = [
        f"{len(keys['done'])} done",
        f"{len(keys['running'])} running" + (f" ({running})" if running else ""),
        f"{len(keys['pending'])} not started",
    ] + ([f"{len(keys['failed'])} failed"] if keys["failed"] else [])
    return (
        f"{what} of {len(runs)} run(s), {', '.join(counts)}; {RESUME}: finished runs are kept, the others "
        f"resume from their last.pt (the last finished epoch) under {out_dir_of(runs)}"
    )


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__


def out_dir_of(runs: list[Run]) -> Path:
    return resolve_path(runs[0].cfg.out_dir) if runs else Path.cwd()


def _failed_parent(sweep: Sweep, run: Run) -> str:
    return next((p for p in run.parents if p in sweep.runs and sweep.runs[p].state == "failed"), "")


def _parents_done(sweep: Sweep, run: Run) -> bool:
    return all(p in sweep.runs and sweep.runs[p].state == "done" for p in run.parents)


def _mean(run_dir: Path) -> float | None:
    try:
        return read_metrics(run_dir)["dev"].get("mean")
    except (OSError, ValueError):  # a stand-in trainer's run (tests) has none
        return None
