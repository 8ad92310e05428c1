"""The papermill driver: run the workbook's notebooks in batch under a profile, report what passed.

Before the first notebook starts, every training run the selected notebooks will ask for is trained on worker
processes (the pre-run: ``mtlib.runs.notebook_runs`` plans the runs the notebooks declare, the executor trains
them on ``mtlib.runs.pool``):
on this 2-core CPU two runs side by side with a thread each take ~0.8x the time of one after another with two
threads each (docs/workbook-time.md). The notebooks then find their runs finished and load and plot them,
several side by side (each kernel gets its own run-events file), the results notebook last. Interrupted
(Ctrl-C, SIGTERM), it stops the pre-run's workers and the notebooks' kernels and says where it resumes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import threading
import time
import traceback
from pathlib import Path

from mtlib.config.run_config import REPO_ROOT
from mtlib.runs.interrupts import RESUME, Processes
from mtlib.experiments.resolve import load_profile
from mtlib.runs.events import PROGRESS_ENV, ProgressFile, follow

RESULTS_NOTEBOOK = "07_results"
MAX_NOTEBOOKS_AT_ONCE = 4
PRE_RUN = "pre-run"


def list_notebooks(only: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    folder = folder or REPO_ROOT / "notebooks"
    # the results notebook last: it writes outputs/results.md from every finished run, 08's rows included
    nbs = sorted(folder.glob("[0-9][0-9]_*.ipynb"), key=lambda nb: (nb.stem == RESULTS_NOTEBOOK, nb.name))
    if only:
        matches = {o: {nb for nb in nbs if nb.stem.startswith(o)} for o in only}
        picked = [nb for nb in nbs if any(nb in m for m in matches.values())]
        unknown = [o for o in only if not matches[o]]
        if unknown:
            raise ValueError(f"--only: no notebook matches {unknown}; notebooks: {', '.join(n.stem for n in nbs)}")
        nbs = picked
    return nbs


def run_workbook(
    profile: str,
    only: list[str] | None = None,
    out_dir: str | Path = "outputs/notebooks",
    dry_run: bool = False,
    folder: Path | None = None,
    parameters: dict | None = None,
    workers: int | str | None = None,
) -> int:
    """Train the notebooks' runs on ``workers`` processes (None: ``default_workers``), then execute the
    notebooks with papermill; keep going past failures; report and return non-zero if any notebook failed.

    The terminal gets a line per run as it starts, after each epoch and as it ends (``mtlib.runs.events``),
    and a summary table at the end; the kernel's own log (e.g. its TCP warning) is kept out."""
    from mtlib.runs.pool import check_workers, usable_cores

    load_profile(profile)  # a bad profile or workers value fails here, before anything runs
    workers = check_workers(workers) if workers is not None else None
    notebooks = list_notebooks(only, folder)
    out_dir = Path(out_dir) / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    first = pre_run(notebooks, profile, parameters, workers, dry_run)
    if dry_run:
        for nb in notebooks:
            print(
                f"[workbook] {nb.name}: started ({_planned_runs(nb.stem, profile) or 'no'} training run(s) "
                f"planned) -> {out_dir / nb.name}",
                flush=True,
            )
        return 0
    # With every run trained, the notebooks only load and plot: a few side by side (results last, it reads
    # every run). Otherwise they train runs themselves, and may share parents: one at a time.
    trained = first is not None and first[1] == "ok"
    side_by_side = (workers or min(MAX_NOTEBOOKS_AT_ONCE, usable_cores())) if trained else 1
    results = [first, *_execute(notebooks, profile, parameters, out_dir, side_by_side)]
    print("\n[workbook] summary")
    print(f"  {'notebook':28s} {'status':7s} {'runs':>5s} {'time':>9s}")
    for name, status, runs, secs, reason in [r for r in results if r is not None]:
        print(f"  {name:28s} {status:7s} {runs:5d} {_hms(secs):>9s}  {reason}")
    total = time.perf_counter() - t0  # wall time: notebooks ran side by side
    notebooks_run = results[1:]  # the pre-run's failures are its notebooks' to report: they try those runs again
    failed = [r for r in notebooks_run if r[1] != "ok"]
    print(f"  {len(notebooks_run) - len(failed)} passed, {len(failed)} failed, {_hms(total)} in all")
    return 1 if failed else 0


def _execute(notebooks: list[Path], profile: str, parameters: dict | None, out_dir: Path, at_once: int) -> list:
    """Execute the notebooks, ``at_once`` at a time but the results notebook after all others."""
    from concurrent.futures import ThreadPoolExecutor

    from mtlib.runs.interrupts import explained

    last = [nb for nb in notebooks if nb.stem == RESULTS_NOTEBOOK]
    rest = [nb for nb in notebooks if nb.stem != RESULTS_NOTEBOOK]
    kernels = Kernels()
    pool = ThreadPoolExecutor(max_workers=max(1, min(at_once, len(rest) or 1)))
    try:
        with explained(kernels.interrupted_at):
            done = list(pool.map(lambda nb: _execute_one(nb, profile, parameters, out_dir, kernels), rest))
            return done + [_execute_one(nb, profile, parameters, out_dir, kernels) for nb in last]
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)  # no notebook starts after this
        log = logging.getLogger("papermill")
        level = log.level
        log.setLevel(logging.CRITICAL)  # its "Kernel died ...": the interrupted line says why
        try:
            kernels.stop()
            pool.shutdown(wait=True)  # their papermill threads see the kernel gone and end
        finally:
            log.setLevel(level)
        raise
    finally:
        pool.shutdown(wait=True)


class Kernels(Processes):
    """The notebooks running and their kernels. A kernel has a session of its own (a terminal's Ctrl-C does not
    reach it) and would run its notebook to the end: an interrupted workbook stops them, SIGINT first (Jupyter's
    interrupt: a run the kernel trains unwinds, its lock file goes and its last.pt stays; papermill, seeing the
    cell fail, shuts the kernel down), then SIGTERM, then SIGKILL."""

    def __init__(self):
        super().__init__((signal.SIGINT, signal.SIGTERM, signal.SIGKILL))
        self.running, self.finished = [], 0

    def interrupted_at(self) -> str:
        return (
            f"the workbook's notebooks ({', '.join(self.running) or 'none'} running, {self.finished} "
            f"finished); {RESUME}: the notebooks run again, their finished runs are kept and the others "
            "resume from their last.pt (the last finished epoch)"
        )


def profile_outputs(profile: str, notebook: str) -> dict:
    """Where a profile's figures (and 07's results.md) go: ``outputs/`` for the default ``quick`` workbook,
    ``outputs/<profile>/`` for any other, so ``make workbook PROFILE=smoke`` never overwrites quick's."""
    base = "outputs" if profile == "quick" else f"outputs/{Path(profile).stem}"
    out = {"figures_dir": f"{base}/figures"}
    if notebook.startswith("07"):
        out["results_md"] = f"{base}/results.md"
    return out


def _execute_one(nb: Path, profile: str, parameters: dict | None, out_dir: Path, kernels: Kernels) -> tuple:
    import papermill as pm

    target = out_dir / nb.name
    planned = _planned_runs(nb.stem, profile)
    print(f"[workbook] {nb.name}: started ({planned or 'no'} training run(s) planned) -> {target}", flush=True)
    t0 = time.perf_counter()
    printer = RunLines(nb.stem, planned)
    kernels.running.append(nb.stem)
    try:
        with _progress_file() as events, _following(events, printer):
            pm.execute_notebook(
                str(nb),
                str(target),
                parameters={"profile": profile, **profile_outputs(profile, nb.stem), **(parameters or {})},
                kernel_name="python3",
                progress_bar=False,
                cwd=str(REPO_ROOT),
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
                kernel_manager_class=_kernel_manager({PROGRESS_ENV: str(events)}, kernels),
            )
    except Exception as e:  # noqa: BLE001 - report every failure, then go on
        kernels.running.remove(nb.stem)  # (an interrupt leaves it listed: the interrupted line names it)
        if kernels.stopping:  # its kernel was stopped: the interrupted line says it
            return (nb.stem, "stopped", printer.runs, time.perf_counter() - t0, "")
        reason = _failure_reason(e)
        print(f"[workbook] FAILED {nb.name}: {reason}", flush=True)
        return (nb.stem, "FAILED", printer.runs, time.perf_counter() - t0, reason)
    kernels.running.remove(nb.stem)
    kernels.finished += 1
    secs = time.perf_counter() - t0
    print(f"[workbook] {nb.stem}: ok in {_hms(secs)}", flush=True)
    return (nb.stem, "ok", printer.runs, secs, "")


def _kernel_manager(env: dict, kernels: Kernels):
    """nbclient's kernel manager with ``env`` added to the kernel's environment: each notebook run side by side
    writes its run events to its own file (os.environ is one for all threads). ``kernels`` gets its process."""
    from jupyter_client.manager import AsyncKernelManager

    class KernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            started = await super().start_kernel(**{**kw, "env": {**os.environ, **kw.get("env", {}), **env}})
            process = getattr(self.provisioner, "process", None)  # a local kernel's Popen
            if process is not None:
                kernels.add(process)
            return started

    return KernelManager


def pre_run(
    notebooks: list[Path], profile: str, parameters: dict | None, workers: int | None, dry_run: bool
) -> tuple | None:
    """Train every run the notebooks will ask for on worker processes; a summary row (None: nothing to train).
    A run that fails here is tried again by its notebook, which reports it."""
    from mtlib.runs.interrupts import explained
    from mtlib.runs.notebook_runs import notebook_runs
    from mtlib.runs.executor import interrupted_at
    from mtlib.runs.pool import default_workers, default_workers_reason, threads_per_worker, usable_cores
    from mtlib.runs.sweep import run_sweep

    runs = notebook_runs(notebooks, profile, parameters)
    if not runs:
        return None
    device = runs[0].cfg.device
    why = "--workers" if workers is not None else default_workers_reason(device)
    workers = workers or default_workers(device)
    threads = runs[0].cfg.threads or threads_per_worker(workers)
    name = f"{PRE_RUN} ({workers} workers x {threads} thr)"
    print(
        f"[workbook] pre-run: {len(runs)} training run(s) of these notebooks on {workers} worker process(es) x "
        f"{threads} thread(s) ({why}; {usable_cores()} cores); the notebooks then load them",
        flush=True,
    )
    if dry_run:
        return None
    t0 = time.perf_counter()
    printer = RunLines(PRE_RUN, len(runs), workers)
    try:
        with (
            _progress_file() as events,
            _following(events, printer),
            explained(lambda: interrupted_at(runs, "the workbook's pre-run")),
        ):
            progress = ProgressFile(events, {r.key: r for r in runs})
            sweep = run_sweep(runs, workers=workers, show=False, listeners=[progress])
    except Exception as e:  # noqa: BLE001 - e.g. no process could start: the notebooks train their own runs
        print(f"[workbook] pre-run FAILED: {_failure_reason(e)}; the notebooks train their runs themselves", flush=True)
        return (name, "FAILED", printer.runs, time.perf_counter() - t0, _failure_reason(e))
    for r in sweep.failed:
        print(f"[workbook] pre-run: {r.key} failed: {r.error} (its notebook tries it again)", flush=True)
    secs = time.perf_counter() - t0
    print(
        f"[workbook] pre-run: {len(runs) - len(sweep.failed)} of {len(runs)} run(s) finished in {_hms(secs)}",
        flush=True,
    )
    status = "ok" if not sweep.failed else f"{len(sweep.failed)} fail"
    return (name, status, printer.runs, secs, "")


class RunLines:
    """Prints one line per run event of one notebook (or the pre-run): run k of n, row, seed, phase and epoch,
    dev mean, elapsed and an estimate of what is left (this run: by its epochs; the notebook: by the runs so
    far, ``workers`` of them at a time)."""

    def __init__(self, notebook: str, planned: int, workers: int = 1):
        self.notebook, self.planned, self.runs, self.started, self.took = notebook, planned, 0, {}, []
        self.workers, self.whole = workers, "the pre-run" if notebook == PRE_RUN else "the notebook"

    def __call__(self, ev: dict) -> None:
        """One event line of ``ProgressFile``: started, found, evaluated, finished or failed."""
        key = (ev["name"], ev["seed"])
        now = time.time()
        head = f"[workbook] {self.notebook} {ev['name']} seed {ev['seed']}"
        mean = f"dev mean {ev['mean']:.3f}" if isinstance(ev.get("mean"), (int, float)) else "dev mean -"
        if ev["kind"] in ("started", "found"):
            self.runs += 1
            self.started[key] = now
            of = f" of {self.planned}" if self.planned >= self.runs else ""
            what = "started" if ev["kind"] == "started" else f"already finished, {mean}"
            print(f"{head}: run {self.runs}{of} {what}", flush=True)
            return
        elapsed = now - self.started.get(key, now)
        if ev["kind"] == "evaluated":
            done, total = ev["epochs_done"], max(ev["epochs_total"], 1)
            left = elapsed / done * (total - done) if done else 0.0
            print(
                f"{head}: {ev['phase']} epoch {ev['epoch']} ({done}/{total}), {mean}, {_hms(elapsed)} elapsed, "
                f"~{_hms(left)} left in this run{self._notebook_left(left)}",
                flush=True,
            )
        elif ev["kind"] == "finished":
            self.took.append(elapsed)
            print(f"{head}: done, {mean}, {_hms(elapsed)}{self._notebook_left(0.0)}", flush=True)
        elif ev["kind"] == "failed":
            print(f"{head}: failed after {_hms(elapsed)}: {ev.get('error', '')}", flush=True)

    def _notebook_left(self, run_left: float) -> str:
        later = self.planned - self.runs
        if later <= 0 or not self.took:
            return ""
        left = run_left + later * sum(self.took) / len(self.took) / self.workers
        return f"; ~{_hms(left)} left in {self.whole}"


def _planned_runs(notebook: str, profile: str) -> int:
    """Rows and declared comparators of this notebook times the profile's seeds (parents come on top)."""
    from mtlib.experiments.resolve import profile_seeds
    from mtlib.experiments.rows import comparators_for, rows_for

    return (len(rows_for(notebook)) + len(comparators_for(notebook))) * len(profile_seeds(profile))


@contextlib.contextmanager
def _progress_file():
    """A fresh events file (a notebook's kernel is told its name through ``_kernel_manager``)."""
    with tempfile.TemporaryDirectory(prefix="mtlib-workbook-") as tmp:
        yield Path(tmp) / "events.jsonl"


@contextlib.contextmanager
def _following(path: Path, on_event):
    stop = threading.Event()
    reader = threading.Thread(target=follow, args=(path, on_event, stop), daemon=True)
    reader.start()
    try:
        yield
    finally:
        stop.set()
        reader.join(10)


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _failure_reason(e: Exception) -> str:
    name = getattr(e, "ename", type(e).__name__)
    value = getattr(e, "evalue", str(e))
    text = f"{name}: {value}".strip()
    if not text or text == ":":
        text = traceback.format_exception_only(type(e), e)[-1].strip()
    return text.splitlines()[0][:300]
