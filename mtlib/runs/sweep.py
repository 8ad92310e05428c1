"""``python -m mtlib sweep``: rows x seeds of a profile on an engine, through the one executor.

- ``local``: in this process, one run after another; with ``workers=N``, on N worker processes of this
  machine, each with cores // N threads (``mtlib.runs.pool``).
- ``ray``: each run a Ray task, on a local Ray cluster (127.0.0.1 only, no dashboard) or an existing one
  (``address``); ``mtlib.runs.ray_engine``.

What runs when and what a failure means is ``mtlib.runs.executor``'s; the engines only train. The sweep prints
a live line in the terminal and a table at the end (``Sweep.table()``, a DataFrame a notebook can show); an
interrupted sweep (Ctrl-C, SIGTERM) stops what it started and says where the same command resumes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mtlib.config.run_config import parse_overrides
from mtlib.experiments.rows import load_experiments
from mtlib.runs.events import Listener
from mtlib.runs.executor import Run, Sweep, execute, interrupted_at, runs_table
from mtlib.runs.interrupts import explained
from mtlib.runs.plan import plan
from mtlib.runs.pool import check_workers

ENGINES = ("local", "ray")


def make_engine(
    runs: list[Run],
    engine: str = "local",
    *,
    workers: int | None = None,
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    max_retries: int = 3,
    num_cpus: int | None = None,
):
    """The engine named ``engine`` (``workers``: the local engine on N worker processes)."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if workers is not None and engine != "local":
        raise ValueError("workers: only the local engine has worker processes (ray: --cpus-per-run)")
    if engine == "ray":
        from mtlib.runs.ray_engine import RayEngine

        return RayEngine(
            runs,
            address=address,
            cpus_per_run=cpus_per_run,
            gpus_per_run=gpus_per_run,
            max_retries=max_retries,
            num_cpus=num_cpus,
        )
    if workers is not None:
        from mtlib.runs.pool import PoolEngine

        return PoolEngine(workers)
    from mtlib.runs.local import LocalEngine

    return LocalEngine()


def run_sweep(
    runs: list[Run],
    engine: str = "local",
    *,
    listeners: Iterable[Listener] = (),
    show: bool = True,
    workers: int | None = None,
    **engine_options,
) -> Sweep:
    """Run every run of ``runs`` (parents listed before children) on ``engine``; returns the finished Sweep."""
    if workers is not None:
        workers = check_workers(workers)  # before anything runs
    return execute(runs, make_engine(runs, engine, workers=workers, **engine_options), listeners, show)


class NotebookView:
    """A listener for Jupyter: the table of ``runs`` under the cell, redrawn in place as they move."""

    def __init__(self, runs: list[Run]):
        from IPython.display import display

        self.runs = runs
        self.handle = display(None, display_id=True)  # None outside a kernel: then nothing is drawn

    def __call__(self, event) -> None:
        if self.handle is not None and event.kind in ("started", "found", "finished", "failed", "evaluated"):
            self.handle.update(runs_table(self.runs))


def sweep_command(args) -> int:
    """``python -m mtlib sweep ...`` (mtlib.cli); 0 when every run finished, 1 when any failed."""
    overrides = parse_overrides(args.set)
    rows = list(args.rows)
    for nb in args.notebooks:
        found = [r["id"] for r in load_experiments() if r["notebook"] == nb or r["notebook"].startswith(nb)]
        if not found:
            raise ValueError(f"--notebooks {nb}: no row of params/experiments.yaml belongs to such a notebook")
        rows += [r for r in found if r not in rows]
    if not rows:
        raise ValueError("sweep: name rows (--rows ROW ...) or notebooks (--notebooks 03 ...)")
    if args.out:
        overrides["out_dir"] = str(Path(args.out).resolve())
    workers = None if args.workers is None else check_workers(args.workers)  # before the runs are planned
    runs = plan(args.profile, rows, args.seeds, **overrides)
    with explained(lambda: interrupted_at(runs)):
        sweep = run_sweep(
            runs,
            args.engine,
            address=args.address,
            cpus_per_run=args.cpus_per_run,
            gpus_per_run=args.gpus_per_run,
            max_retries=args.max_retries,
            workers=workers,
        )
    return 1 if sweep.failed else 0
