"""A notebook's runs: its rows (or rows by id, or its declared comparators) for every seed of a profile, parents
first, through the one executor (``mtlib.runs.executor``). Finished runs are found, not trained again;
unfinished ones resume. A failed run raises ``RunsFailed`` after the others finished.

Under ``make workbook`` each event also goes to the kernel's ``$MTLIB_PROGRESS_FILE``, which the workbook's
terminal prints. ``on_event`` is any listener of the event stream (``mtlib.runs.events``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mtlib.experiments.resolve import profile_seeds
from mtlib.experiments.rows import comparators_for, rows_for
from mtlib.runs.events import Listener, ProgressFile
from mtlib.runs.plan import plan
from mtlib.runs.sweep import NotebookView, run_sweep


def run_rows(
    notebook: str,
    profile: str,
    seeds: list[int] | None = None,
    only: list[str] | None = None,
    on_event: Listener | None = None,
    engine: str = "local",
    address: str | None = None,
    **overrides: Any,
) -> list[Path]:
    """Every row of one notebook (``only``: those of them) for every seed; the run directories, row by row."""
    ids = [r["id"] for r in rows_for(notebook) if not only or r["id"] in only]
    return run_ids(ids, profile, seeds=seeds, on_event=on_event, engine=engine, address=address, **overrides)


def run_comparators(
    notebook: str, profile: str, seeds: list[int] | None = None, on_event: Listener | None = None, **overrides: Any
) -> list[Path]:
    """The rows ``notebook`` plots beside its own (``notebooks:`` in params/experiments.yaml), every seed."""
    return run_ids(comparators_for(notebook), profile, seeds=seeds, on_event=on_event, **overrides)


def run_ids(
    ids: list[str],
    profile: str,
    seeds: list[int] | None = None,
    on_event: Listener | None = None,
    engine: str = "local",
    address: str | None = None,
    **overrides: Any,
) -> list[Path]:
    """Rows by id (any notebook's) for every seed, in this kernel or (``engine="ray"``) on a Ray cluster
    (``address``, else a local one) with a live table under the cell; the run directories, row by row."""
    seeds = seeds or profile_seeds(profile)
    runs = plan(profile, ids, seeds, **overrides)
    listeners = [on_event] if on_event is not None else []
    progress = ProgressFile.from_environment({r.key: r for r in runs})
    if progress is not None:
        listeners.append(progress)
    if engine != "local" and "ipykernel" in sys.modules:
        listeners.append(NotebookView(runs))
    sweep = run_sweep(runs, engine, listeners=listeners, show=engine != "local", address=address)
    sweep.raise_failures()
    return [Path(sweep.runs[f"{i} seed{s}"].run_dir) for i in ids for s in seeds]
