"""The engine of worker processes (``run_sweep(..., workers=N)``, ``python -m mtlib sweep --workers N``).

Why: torch's threads scale below 2x on 2 cores for this small model (a quick row trains at ~55 examples/s
on one thread, ~80 on two), so on a CPU two runs side by side with a thread each finish sooner than the same
runs one after another with two threads each: four quick rows took 240 s against 286 s on this 2-core machine
(docs/workbook-time.md).

- N worker processes (``python -m mtlib.runs.worker``: fresh interpreters, so the caller's script or
  notebook is never imported again); each trains one run after another (torch is imported once per worker,
  ~4 s) with ``threads = cores // N`` unless the run's config sets ``threads`` itself.
- What runs when, and what a failure means, is the executor's (``mtlib.runs.executor``). A worker that dies
  (SIGKILL, out of memory) fails its run, naming the exit code; the run's ``last.pt`` stays, so the next sweep
  resumes it. A fresh worker takes the next run.
- A worker's output (the trainer's prints, library warnings, a traceback) goes to its own log file, so the
  terminal keeps the sweep's lines; the folder is removed at the end unless a run failed.
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

from mtlib.runs.events import Event, Listener
from mtlib.runs.executor import Run, finish_event

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
    process: subprocess.Popen  # runs go out on its stdin, answers come back on its stdout (mtlib.runs.worker)
    log: Path
    run: Run | None = None


class PoolEngine:
    """``workers`` processes, each with ``threads`` threads (cores // workers by default), started as needed."""

    def __init__(self, workers: int, threads: int | None = None):
        self.workers = check_workers(workers)
        self.threads = threads or threads_per_worker(self.workers)
        self.logs = Path(tempfile.mkdtemp(prefix="mtlib-sweep-"))
        self.answers: queue.Queue = queue.Queue()  # (worker, message); message None: the worker's stdout closed
        self.pool: list[Worker] = []
        self.started, self.any_failed = 0, False

    def free(self) -> int:
        return sum(w.run is None for w in self.pool) + self.workers - len(self.pool)

    def busy(self) -> bool:
        return any(w.run is not None for w in self.pool)

    def submit(self, run: Run, emit: Listener) -> None:
        idle = [w for w in self.pool if w.run is None]
        if not idle:
            self.started += 1
            idle = [_start_worker(self.logs / f"worker{self.started}.log", self.threads, self.answers)]
            self.pool.append(idle[0])
        w = idle[0]
        cfg = run.cfg if run.cfg.threads else run.cfg.replace(threads=self.threads)  # not part of the run id
        w.run = run
        try:
            w.process.stdin.write(json.dumps({"key": run.key, "config": cfg.to_dict()}) + "\n")
            w.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker is gone: its closed stdout reports it, and the run fails as lost
        emit(Event("started", run.key, {"pid": w.process.pid}))

    def wait(self, emit: Listener) -> None:
        """Until one run ends: apply the workers' answers (events of their runs) as they come."""
        while True:
            w, message = self.answers.get()
            if message is None:
                w.process.wait()
                self.pool.remove(w)
                if w.run is not None:
                    r, w.run = w.run, None
                    self.any_failed = True
                    error = (
                        f"worker exited with code {w.process.returncode} during the run (its output: {w.log}); "
                        "its last epoch's checkpoint is kept: run the sweep again to resume it"
                    )
                    emit(Event("failed", r.key, {"error": error}))
                    return
                continue
            r = w.run
            if r is None:
                continue
            event = Event.from_json(message)
            if event.kind == "finished":
                w.run = None
                emit(finish_event(r, event.data["run_dir"]))
                return
            if event.kind == "failed":
                w.run, self.any_failed = None, True
                emit(Event("failed", r.key, {"error": f"{event.data['error']} (traceback: {w.log})"}))
                return
            emit(event)

    def close(self) -> None:
        """Idle workers see their input end; busy ones (an interrupted sweep) get SIGTERM, which unwinds their run
        (its lock released; its last.pt kept: the run resumes later); one still there after 10 s is killed. The
        log folder goes unless a run failed (the failure names its log)."""
        interrupted = self.busy()
        for w in self.pool:
            if w.run is not None:
                w.process.terminate()
            try:
                w.process.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        for w in self.pool:
            try:
                w.process.wait(10)
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait()
        self.pool = []
        if interrupted or not self.any_failed:
            shutil.rmtree(self.logs, ignore_errors=True)


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

    def read() -> None:  # one thread per worker: a blocking readline each, the engine waits on the queue
        for line in process.stdout:
            answers.put((w, line))
        answers.put((w, None))

    threading.Thread(target=read, daemon=True, name=f"sweep-{log.stem}").start()
    return w
