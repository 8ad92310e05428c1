"""The local engine's worker processes (``run_sweep(..., workers=N)``, ``python -m mtlib sweep --workers N``).

Why: torch's threads scale below 2x on 2 cores for this small model (a quick row trains at ~55 examples/s
on one thread, ~80 on two), so on a CPU two runs side by side with a thread each finish sooner than the same
runs one after another with two threads each: four quick rows took 240 s against 286 s on this 2-core machine
(docs/workbook-time.md).

- N worker processes (``python -m mtlib.runs.worker``: fresh interpreters, so the caller's script or
  notebook is never imported again); each trains one run after another (torch is imported once per worker,
  ~4 s) with ``threads = cores // N`` unless the run's config sets ``threads`` itself.
- A run is handed out when its parents (``init_from``) are done; a run whose parent failed fails unstarted.
- A run that raises is reported in one line and the others go on. A worker that dies (SIGKILL, out of
  memory) fails its run, naming the exit code; the run's ``last.pt`` stays, so the next sweep resumes it.
  A fresh worker takes the next run. Finished runs are skipped by the trainer itself.
- A worker's output (the trainer's prints, library warnings, a traceback) goes to its own log file, so the
  terminal keeps the sweep's lines; the folder is removed at the end unless a run failed.
- Workers inherit ``$MTLIB_PROGRESS_FILE``: ``make workbook`` prints every worker's run events.
- An interrupted sweep (Ctrl-C, SIGTERM: ``mtlib.runs.interrupts``) stops its workers (each run keeps its
  last.pt) and removes the log folder; a worker whose sweep died without stopping it ends by itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from mtlib.runs.sweep import Sweep, SweepRun, blocked_by, finish
from mtlib.train.shared_phases import phases_key, state_path

# each worker holds a model, its optimizer and the data (~1.7 GB resident in a quick row); measured on 2 cores
# only: beyond 4 processes a wide CPU is left to more threads per run
MAX_CPU_WORKERS = 4
# a gpu-profile MiniLM run holds ~2-3 GB of GPU memory, a bert-base one up to ~5 GB (docs/gpu.md)
GPU_GB_PER_WORKER = 10
MAX_GPU_WORKERS = 8


def check_workers(value) -> int:
    """``value`` as a number of worker processes (a whole number, 1 or more); else ValueError in one line."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.lstrip("+").isdigit():
        text = int(text)
    if isinstance(text, bool) or not isinstance(text, int) or text < 1:
        raise ValueError(f"workers: got {value!r}; expected a whole number of worker processes, 1 or more")
    return text


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_workers(device: str = "auto", cores: int | None = None, gpu_gb: float | None = None) -> int:
    """On a CPU one worker per core, at most 4. On a GPU several runs share it: a quick or gpu-profile step is
    too small to fill one (an H200 ran 7 gpu-profile rows side by side at 3.5x the examples/s of one alone,
    docs/gpu.md), so one worker per GPU_GB_PER_WORKER of its memory and per 2 cores, at most 8."""
    from mtlib.machine.runtime import resolve_device

    cores = cores or usable_cores()
    dev = resolve_device(device)
    if dev.type == "cpu":
        return max(1, min(MAX_CPU_WORKERS, cores))
    if dev.type != "cuda":
        return 1
    if gpu_gb is None:
        import torch

        gpu_gb = torch.cuda.get_device_properties(dev).total_memory / 2**30
    return max(1, min(MAX_GPU_WORKERS, cores // 2, int(gpu_gb // GPU_GB_PER_WORKER)))


def default_workers_reason(device: str = "auto") -> str:
    from mtlib.machine.runtime import resolve_device

    kind = resolve_device(device).type
    return {
        "cpu": "on a CPU: one per core, at most 4",
        "cuda": f"on a GPU: one per {GPU_GB_PER_WORKER} GB of its memory and per 2 cores, at most {MAX_GPU_WORKERS}",
    }.get(kind, "one process owns the device")


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    return max(1, (cores or usable_cores()) // workers)


@dataclasses.dataclass
class Worker:
    process: subprocess.Popen  # runs go out on its stdin, answers come back on its stdout (sweep_worker)
    log: Path
    run: SweepRun | None = None


def run_in_workers(sweep: Sweep, workers: int, threads: int | None = None) -> None:
    """Run every run of ``sweep`` on ``workers`` processes, parents before children; states land in ``sweep``."""
    workers = check_workers(workers)
    threads = threads or threads_per_worker(workers)
    logs = Path(tempfile.mkdtemp(prefix="mtlib-sweep-"))
    answers: queue.Queue = queue.Queue()  # (worker, message), message None when the worker's stdout closed
    pending, pool, started, keys, interrupted = list(sweep.runs.values()), [], 0, {}, False
    try:
        while pending or any(w.run for w in pool):
            for r in [r for r in pending if blocked_by(sweep, r)]:
                r.state, r.error = "failed", blocked_by(sweep, r)
                pending.remove(r)
                sweep.changed()
            while ready := [r for r in pending if all(sweep.runs[p].state == "done" for p in r.parents)]:
                idle = [w for w in pool if w.run is None]
                if not idle and len(pool) < workers:
                    started += 1
                    idle = [_start_worker(logs / f"worker{started}.log", threads, answers)]
                    pool.append(idle[0])
                if not idle:
                    break
                r = start_order(ready, [w.run for w in pool if w.run is not None], keys)[0]  # after each hand-out
                _hand_out(sweep, idle[0], r, threads)
                pending.remove(r)
            if not any(w.run for w in pool):
                for r in pending:  # parents that are not in the sweep: nothing will ever start them
                    r.state, r.error = "failed", "a parent is not part of the sweep"
                    sweep.changed()
                break
            w, message = answers.get()
            if message is None:
                w.process.wait()
                pool.remove(w)
                if w.run is not None:
                    _lost(sweep, w)
            else:
                _apply(sweep, w, message)
    except KeyboardInterrupt:
        interrupted = True  # no summary will name the logs: they go too
        raise
    finally:
        _stop(pool)
        if interrupted or not sweep.failed:
            shutil.rmtree(logs, ignore_errors=True)


def start_order(ready: list[SweepRun], running: list[SweepRun], keys: dict) -> list[SweepRun]:
    """The ready runs in the order to start them: the most planned updates first, so a sweep does not end on a
    long run while the other workers idle; but a run whose first phase a running run is training, and has not
    handed over yet, after the others: it then adopts that run's state (``mtlib.train.shared_phases``) instead
    of training the same phase beside it. ``keys`` caches each run's first-phase key."""

    def first_phase(r: SweepRun) -> str | None:
        if r.key not in keys:
            keys[r.key] = _first_phase_key(r.cfg)
        return keys[r.key]

    busy = {k for r in running if (k := first_phase(r)) and not state_path(r.cfg, k).is_file()}
    return sorted(ready, key=lambda r: (first_phase(r) in busy, -planned_updates(r.cfg)))


def planned_updates(cfg) -> int:
    return sum(p.epochs * p.batches_per_epoch for p in cfg.phase_configs())


def _first_phase_key(cfg) -> str | None:
    if len(cfg.phase_configs()) < 2:
        return None
    from mtlib.train.identity import run_identity

    return phases_key(run_identity(cfg), cfg.seed, 1)


def _start_worker(log: Path, threads: int, answers: queue.Queue) -> Worker:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")])
        ),
    }
    with open(log, "ab") as err:
        # our pid: the worker ends when this process dies (sweep_worker, interrupts.die_with_parent)
        process = subprocess.Popen(
            [sys.executable, "-m", "mtlib.runs.worker", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            text=True,
            bufsize=1,
        )
    w = Worker(process, log)

    def read() -> None:  # one thread per worker: a blocking readline each, the main loop waits on the queue
        for line in process.stdout:
            answers.put((w, json.loads(line)))
        answers.put((w, None))

    threading.Thread(target=read, daemon=True, name=f"sweep-{log.stem}").start()
    return w


def _hand_out(sweep: Sweep, w: Worker, r: SweepRun, threads: int) -> None:
    cfg = r.cfg if r.cfg.threads else r.cfg.replace(threads=threads)  # threads are not part of a run's identity
    w.run = r
    r.state, r.attempts, r.pid, r.progress = "running", r.attempts + 1, w.process.pid, ""
    try:
        w.process.stdin.write(json.dumps(cfg.to_dict()) + "\n")
        w.process.stdin.flush()
    except (BrokenPipeError, OSError):
        pass  # the worker is gone: its closed stdout reports it, and the run fails as lost
    sweep.changed()


def _apply(sweep: Sweep, w: Worker, message: dict) -> None:
    r = w.run
    if r is None:
        return
    if "progress" in message:
        r.progress = message["progress"]
    elif "done" in message:
        finish(r, message["done"])
        w.run = None
    else:
        r.state, r.error = "failed", f"{message['failed']} (traceback: {w.log})"
        w.run = None
    sweep.changed()


def _lost(sweep: Sweep, w: Worker) -> None:
    r, w.run = w.run, None
    r.state = "failed"
    r.error = (
        f"worker exited with code {w.process.returncode} during the run (its output: {w.log}); its last "
        "epoch's checkpoint is kept: run the sweep again to resume it"
    )
    sweep.changed()


def _stop(pool: list[Worker]) -> None:
    """Idle workers see their input end; busy ones (an interrupted sweep) get SIGTERM, which unwinds their run
    (its lock released; its last.pt kept: the run resumes later); one still there after 10 s is killed."""
    for w in pool:
        if w.run is not None:
            w.process.terminate()
        try:
            w.process.stdin.close()
        except (BrokenPipeError, OSError):
            pass
    for w in pool:
        try:
            w.process.wait(10)
        except subprocess.TimeoutExpired:
            w.process.kill()
            w.process.wait()
