"""Many runs: every (row, seed) of a study, parents (``init_from``) before their children, on an engine.

- ``local``: one after another in this process (what ``run_ids`` always did); with ``workers=N``, on N worker
  processes of this machine, each with cores // N threads (``mtlib.runs.pool``).
- ``ray``: each run is a Ray task with declared resources (a GPU per run where the cluster has GPUs, else
  CPUs), on a local Ray cluster (127.0.0.1 only, no dashboard) or on an existing one (``address``). A child is
  submitted when its parent is done. A worker that dies (SIGKILL, a lost node) is retried up to
  ``max_retries`` times, and the retry resumes from the run's ``last.pt``; a run that raises (a bad config, a
  numeric fault) fails once and is not retried; the others go on. The output folder must be one every node
  sees: it is checked before anything runs.

Both engines keep a ``Sweep`` whose runs move through pending -> running -> done | failed; it prints a live
line in the terminal and a table (``Sweep.table()``, a DataFrame a notebook can show) at the end. An
interrupted sweep (Ctrl-C, SIGTERM) stops what it started and says where the same command resumes
(``interrupted_at``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

from mtlib.config.run_config import RunConfig, resolve_path
from mtlib.experiments.rows import get_row, load_experiments, parent_rows
from mtlib.experiments.resolve import profile_seeds, resolve_config

ENGINES = ("local", "ray")
STATES = ("pending", "running", "done", "failed")
INSTALL_RAY = "--engine ray needs Ray: pip install -e '.[cluster]' (make setup installs it)"


@dataclasses.dataclass
class SweepRun:
    """One (row, seed) of a sweep and where it stands."""

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


class Sweep:
    """The runs of a sweep and their states; ``on_update(sweep)`` is called whenever one changes."""

    def __init__(self, runs: list[SweepRun], on_update: Callable[["Sweep"], None] | None = None, show: bool = True):
        self.runs = {r.key: r for r in runs}
        self.on_update, self.show = on_update, show
        self._last_line = ""

    def counts(self) -> dict[str, int]:
        return {s: sum(r.state == s for r in self.runs.values()) for s in STATES}

    @property
    def failed(self) -> list[SweepRun]:
        return [r for r in self.runs.values() if r.state == "failed"]

    def changed(self) -> None:
        line = (
            "[sweep] "
            + ", ".join(f"{n} {s}" for s, n in self.counts().items())
            + "".join(f" | {r.key}: {r.progress or 'started'}" for r in self.runs.values() if r.state == "running")
        )
        if self.show and line != self._last_line:
            print(line, file=sys.stderr, flush=True)
        self._last_line = line
        if self.on_update is not None:
            self.on_update(self)

    def table(self):
        """One row per run: state, attempts, dev mean, run directory, error (a pandas DataFrame)."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "run": r.key,
                    "state": r.state,
                    "attempts": r.attempts,
                    "dev_mean": r.dev_mean,
                    "run_dir": r.run_dir,
                    "error": r.error,
                }
                for r in self.runs.values()
            ]
        )

    def summary(self) -> str:
        lines = [
            f"{r.key:32s} {r.state:8s} attempts {r.attempts}  "
            + (f"dev mean {r.dev_mean:.4f}  {r.run_dir}" if r.state == "done" and r.dev_mean is not None else r.error)
            for r in self.runs.values()
        ]
        counts = self.counts()
        return "\n".join([*lines, f"[sweep] {counts['done']} done, {counts['failed']} failed of {len(self.runs)}"])


def notebook_view() -> Callable[[Sweep], None]:
    """An ``on_update`` for ``run_sweep`` in Jupyter: the sweep's table, redrawn in place as runs move."""
    from IPython.display import display

    handle = display(None, display_id=True)  # None outside a kernel: then nothing is drawn
    return lambda sweep: handle.update(sweep.table()) if handle is not None else None


def plan(profile: str, rows: list[str], seeds: list[int] | None = None, **overrides: Any) -> list[SweepRun]:
    """The runs of ``rows`` x ``seeds`` (the profile's seeds by default) and their parents, parents first."""
    experiments = load_experiments()
    seeds = seeds or profile_seeds(profile)
    out: dict[str, SweepRun] = {}

    def add(row_id: str, seed: int) -> str:
        key = f"{row_id} seed{seed}"
        if key not in out:
            row = get_row(row_id, experiments)
            parents = [add(p, seed) for p in parent_rows(row)]
            out[key] = SweepRun(key, resolve_config(profile, row=row, seed=seed, **overrides), parents)
        return key

    for row_id in rows:
        for seed in seeds:
            add(row_id, seed)
    return list(out.values())


def run_sweep(
    runs: list[SweepRun],
    engine: str = "local",
    *,
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
    max_retries: int = 3,
    num_cpus: int | None = None,
    on_update: Callable[[Sweep], None] | None = None,
    show: bool = True,
    workers: int | None = None,
) -> Sweep:
    """Run every run of ``runs`` (parents listed before children) on ``engine``; returns the finished Sweep.
    ``workers`` (local only): None runs them in this process, N on N worker processes."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if workers is not None:
        from mtlib.runs.pool import check_workers

        workers = check_workers(workers)  # before anything runs
        if engine != "local":
            raise ValueError("workers: only the local engine has worker processes (ray: --cpus-per-run)")
    sweep = Sweep(runs, on_update, show)
    if engine == "local" and workers is not None:
        from mtlib.runs.pool import run_in_workers

        run_in_workers(sweep, workers)
    elif engine == "local":
        _run_local(sweep)
    else:
        from mtlib.runs.ray_engine import run_on_ray

        run_on_ray(
            sweep,
            address=address,
            cpus_per_run=cpus_per_run,
            gpus_per_run=gpus_per_run,
            max_retries=max_retries,
            num_cpus=num_cpus,
        )
    if show:
        print(sweep.summary(), file=sys.stderr, flush=True)
    return sweep


def sweep_command(args) -> int:
    """``python -m mtlib sweep ...`` (mtlib.cli); 0 when every run finished, 1 when any failed."""
    from mtlib.config.run_config import parse_override
    from mtlib.config.types import ConfigError
    from mtlib.experiments.rows import load_experiments

    overrides, problems = {}, []
    for text in args.set:
        try:
            key, value = parse_override(text)
            overrides[key] = value
        except ConfigError as err:
            problems += err.errors
    if problems:
        raise ConfigError(problems)
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
    workers = None
    if args.workers is not None:
        from mtlib.runs.pool import check_workers

        workers = check_workers(args.workers)  # a bad value is reported before the runs are planned
    from mtlib.runs.interrupts import explained

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


def interrupted_at(runs: list[SweepRun], what: str = "sweep") -> str:
    """The ``interrupted:`` line's text: how far the runs got, and that they resume from their last.pt."""
    from mtlib.runs.interrupts import RESUME

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


def blocked_by(sweep: Sweep, run: SweepRun) -> str:
    """Why ``run`` cannot start ('' when it can): a parent that failed."""
    bad = [p for p in run.parents if sweep.runs[p].state == "failed"]
    return f"parent {bad[0]} failed" if bad else ""


def finish(run: SweepRun, run_dir: str | Path) -> None:
    from mtlib.rundir import read_metrics

    run.state, run.run_dir = "done", str(run_dir)
    run.dev_mean = read_metrics(Path(run_dir))["dev"].get("mean")


def eval_progress(row: dict) -> str | None:
    """The live-view text of a trainer callback row (dev evaluations only)."""
    if row.get("type") != "eval":
        return None
    return f"phase {row.get('phase')} epoch {row.get('epoch')} dev {row.get('mean', float('nan')):.3f}"


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__


def _run_local(sweep: Sweep) -> None:
    from mtlib.train.trainer import run

    for r in sweep.runs.values():
        why = blocked_by(sweep, r)
        if why:
            r.state, r.error = "failed", why
            sweep.changed()
            continue
        r.state, r.attempts, r.pid = "running", r.attempts + 1, os.getpid()
        sweep.changed()

        def report(row: dict, r=r) -> None:
            text = eval_progress(row)
            if text:
                r.progress = text
                sweep.changed()

        try:
            finish(r, run(r.cfg, callback=report))
        except Exception as err:  # noqa: BLE001 - one run's failure is reported; the others go on
            r.state, r.error = "failed", one_line(err)
        sweep.changed()


def check_shared_folder(out_dir: Path, data_files: list[Path], probe: Callable[[list[str]], list[dict]]) -> None:
    """Every node must see the output folder (and the data files) that the driver sees. ``probe(paths)``
    returns, per node, {"node": ..., "seen": {path: text or None}}."""
    if not out_dir.is_absolute():
        raise ValueError(f"sweep output folder {out_dir} must be an absolute path on a filesystem every node mounts")
    out_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    marker = out_dir / f".sweep-probe-{token}"
    marker.write_text(token)
    try:
        for node in probe([str(marker), *map(str, data_files)]):
            seen = node["seen"]
            if seen.get(str(marker)) != token:
                raise ValueError(
                    f"node {node['node']} does not see the sweep output folder {out_dir} (the probe file "
                    "written there is missing): put it on a filesystem every node mounts (NFS, Lustre, "
                    "...) and pass it with --out"
                )
            missing = [p for p in data_files if seen.get(str(p)) is None]
            if missing:
                raise ValueError(
                    f"node {node['node']} does not see the data file {missing[0]}: the data folder must "
                    "be on the shared filesystem too (set data_dir to it)"
                )
    finally:
        marker.unlink(missing_ok=True)


def out_dir_of(runs: list[SweepRun]) -> Path:
    return resolve_path(runs[0].cfg.out_dir) if runs else Path.cwd()
