"""The Ray engine of a sweep (``mtlib.runs.sweep``): each run a Ray task, a small actor collecting live
progress, parents submitted before children, retries of lost workers only.

Without ``address`` it starts a local Ray cluster that listens on 127.0.0.1 only (Ray's own switch,
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, makes the node address the loopback one) with the dashboard off; with
``address`` it joins an existing cluster (``ray start --head`` on one node, ``ray start --address`` on the
others; docs/scaling.md).

Interrupted (Ctrl-C, SIGTERM), the driver cancels its runs' tasks (a KeyboardInterrupt in each: the run unwinds,
its last.pt stays) and shuts down the local cluster it started; a joined cluster is left running.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mtlib.runs.interrupts import handlers_kept
from mtlib.runs.sweep import (
    INSTALL_RAY,
    Sweep,
    SweepRun,
    blocked_by,
    check_shared_folder,
    eval_progress,
    finish,
    one_line,
    out_dir_of,
)

LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray takes 127.0.0.1 as the node's address


def import_ray(local: bool):
    if local:
        os.environ.setdefault(LOCAL_ONLY_ENV, "0")  # read when ray is imported (and by the processes it starts)
    try:
        import ray
    except ImportError:
        raise ValueError(INSTALL_RAY) from None
    if local and os.environ.get(LOCAL_ONLY_ENV) == "0":
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # ray was imported before the variable was set
    return ray


def train_task(cfg, key: str, board) -> str:
    """One run on a Ray worker: it resumes from last.pt when this is a retry; returns the run directory."""
    from mtlib.train.trainer import run

    board.report.remote(key, "started", os.getpid())

    def report(row: dict) -> None:
        text = eval_progress(row)
        if text:
            board.report.remote(key, "progress", text)

    return str(run(cfg, callback=report))


class Board:
    """A Ray actor (no CPU) the runs report to: (key, "started", pid) and (key, "progress", text)."""

    def __init__(self):
        self.events: list[tuple] = []

    def report(self, key: str, kind: str, value) -> None:
        self.events.append((key, kind, value))

    def drain(self) -> list[tuple]:
        events, self.events = self.events, []
        return events


def probe_paths(paths: list[str]) -> dict:
    """On one node: the probe file's text, and which data files exist."""
    import socket

    seen = {}
    for p in paths:
        path = Path(p)
        if path.name.startswith(".sweep-probe-"):
            seen[p] = path.read_text() if path.is_file() else None
        else:
            seen[p] = "present" if path.is_file() else None
    return {"node": socket.gethostname(), "seen": seen}


def run_on_ray(
    sweep: Sweep,
    *,
    address: str | None,
    cpus_per_run: float | None,
    gpus_per_run: float | None,
    max_retries: int,
    num_cpus: int | None,
) -> None:
    ray = import_ray(local=address is None)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    started = not ray.is_initialized()
    with handlers_kept():  # `python -m mtlib`'s SIGTERM handler, which unwinds (ray.init's exits at once)
        if started and address:
            ray.init(address=address, log_to_driver=False)
        elif started:
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    inflight: dict = {}  # ObjectRef -> SweepRun
    board = None
    try:
        runs = list(sweep.runs.values())
        probe = ray.remote(num_cpus=0)(probe_paths)

        def on_every_node(paths: list[str]) -> list[dict]:
            nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
            return ray.get(
                [
                    probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(paths)
                    for n in nodes
                ]
            )

        data_files = sorted({Path(p).resolve() for r in runs for p in _data_files(r.cfg)})
        check_shared_folder(out_dir_of(runs), data_files, on_every_node)
        gpus = ray.cluster_resources().get("GPU", 0)
        board = ray.remote(num_cpus=0)(Board).remote()
        task = ray.remote(train_task)
        pending = list(runs)
        while pending or inflight:
            for r in list(pending):
                why = blocked_by(sweep, r)
                if why:
                    r.state, r.error = "failed", why
                    pending.remove(r)
                    sweep.changed()
                elif all(sweep.runs[p].state == "done" for p in r.parents):
                    num_gpus = (
                        gpus_per_run if gpus_per_run is not None else (1 if gpus and r.cfg.device != "cpu" else 0)
                    )
                    ref = task.options(
                        num_cpus=cpus_per_run or float(r.cfg.threads or 1),
                        num_gpus=num_gpus,
                        max_retries=max_retries,
                        retry_exceptions=False,
                    ).remote(r.cfg, r.key, board)
                    inflight[ref] = r
                    pending.remove(r)
            if not inflight:
                continue
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
            _apply(sweep, ray.get(board.drain.remote()))
            for ref in ready:
                _collect(ray, sweep, inflight.pop(ref), ref, max_retries)
        _apply(sweep, ray.get(board.drain.remote()))
    except KeyboardInterrupt:
        if board is not None:  # which runs had started, for the interrupted line (no more live lines)
            sweep.show = False
            try:
                _apply(sweep, ray.get(board.drain.remote(), timeout=5))
            except Exception:  # noqa: BLE001 - the line then counts them as not started
                pass
        for ref in inflight:  # a KeyboardInterrupt in each task: its run unwinds, as a local one does
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001 - a task that just ended; the others are still cancelled
                pass
        if inflight:
            ray.wait(list(inflight), num_returns=len(inflight), timeout=10)
        raise
    finally:
        if started:
            ray.shutdown()


def _data_files(cfg) -> list:
    """The course files a run trains and is scored on (its test files are optional)."""
    from mtlib.data import parse

    return [
        p
        for t in cfg.tasks
        for p in (
            *parse.split_files(t, "train", cfg.data_dir, cfg.quora_train),
            *parse.split_files(t, "dev", cfg.data_dir),
        )
    ]


def _apply(sweep: Sweep, events: list[tuple]) -> None:
    for key, kind, value in events:
        r = sweep.runs[key]
        if r.state in ("done", "failed"):
            continue
        if kind == "started":
            r.state, r.attempts, r.pid, r.progress = "running", r.attempts + 1, value, ""
        else:
            r.progress = value
        sweep.changed()


def _collect(ray, sweep: Sweep, r: SweepRun, ref, max_retries: int) -> None:
    try:
        finish(r, ray.get(ref))
    except ray.exceptions.RayTaskError as err:  # the run raised: deterministic, reported once
        cause = getattr(err, "cause", None)
        r.state, r.error = "failed", one_line(cause) if cause is not None else one_line(err)
    except ray.exceptions.RayError as err:  # the worker was lost more than max_retries times
        r.state, r.error = "failed", f"worker lost {max_retries + 1} times; last: {one_line(err)}"
    if sweep.show:
        print(f"[sweep] {r.key}: {r.state}" + (f" ({r.error})" if r.error else ""), file=sys.stderr, flush=True)
    sweep.changed()
