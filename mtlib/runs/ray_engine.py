"""The Ray engine (``mtlib.runs.executor``): each run a Ray task with declared resources (a GPU per run where
the cluster has GPUs, else CPUs), a small actor collecting live progress; retries of lost workers only: a
worker that dies (SIGKILL, a lost node) is retried up to ``max_retries`` times and the retry resumes from the
run's ``last.pt``; a run that raises (a bad config, a numeric fault) fails once. The output folder must be one
every node sees: it is checked before anything runs.

Without ``address`` it starts a local Ray cluster that listens on 127.0.0.1 only (Ray's own switch,
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, makes the node address the loopback one) with the dashboard off; with
``address`` it joins an existing cluster (``ray start --head`` on one node, ``ray start --address`` on the
others; docs/scaling.md).

Interrupted (Ctrl-C, SIGTERM), the driver cancels its runs' tasks (a KeyboardInterrupt in each: the run unwinds,
its last.pt stays) and shuts down the local cluster it started; a joined cluster is left running.
"""

from __future__ import annotations

import os
from pathlib import Path

import uuid
from collections.abc import Callable

from mtlib.runs.events import Event, Listener, row_event
from mtlib.runs.executor import Run, finish_event, one_line, out_dir_of
from mtlib.runs.interrupts import handlers_kept

INSTALL_RAY = "--engine ray needs Ray: pip install -e '.[cluster]' (make setup installs it)"
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

    board.report.remote(Event("started", key, {"pid": os.getpid()}).to_json())

    def report(row: dict) -> None:
        event = row_event(key, row)
        if event is not None and event.kind == "evaluated":
            board.report.remote(event.to_json())

    return str(run(cfg, callback=report))


class Board:
    """A Ray actor (no CPU) the runs report their events to (as JSON lines)."""

    def __init__(self):
        self.events: list[str] = []

    def report(self, event: str) -> None:
        self.events.append(event)

    def drain(self) -> list[str]:
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


class RayEngine:
    """Joins the cluster at ``address`` or starts a local one, and checks the shared folder for ``runs``."""

    def __init__(
        self,
        runs: list[Run],
        *,
        address: str | None = None,
        cpus_per_run: float | None = None,
        gpus_per_run: float | None = None,
        max_retries: int = 3,
        num_cpus: int | None = None,
    ):
        ray = self.ray = import_ray(local=address is None)
        self.cpus_per_run, self.gpus_per_run, self.max_retries = cpus_per_run, gpus_per_run, max_retries
        self.inflight: dict = {}  # ObjectRef -> Run
        self.started = not ray.is_initialized()
        self.board = None
        self.emit: Listener | None = None
        with handlers_kept():  # `python -m mtlib`'s SIGTERM handler, which unwinds (ray.init's exits at once)
            if self.started and address:
                ray.init(address=address, log_to_driver=False)
            elif self.started:
                ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
        try:
            data_files = sorted({Path(p).resolve() for r in runs for p in _data_files(r.cfg)})
            check_shared_folder(out_dir_of(runs), data_files, self._on_every_node)
            self.gpus = ray.cluster_resources().get("GPU", 0)
            self.board = ray.remote(num_cpus=0)(Board).remote()
            # wait until the board is alive: a run's reports are queued in its worker until then, and a worker
            # lost before (a kill during the cluster's start-up) took its 'started' with it: an unseen attempt
            ray.get(self.board.drain.remote())
            self.task = ray.remote(train_task)
        except BaseException:
            self.close()
            raise

    def _on_every_node(self, paths: list[str]) -> list[dict]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = self.ray.remote(num_cpus=0)(probe_paths)
        nodes = [n["NodeID"] for n in self.ray.nodes() if n.get("Alive")]
        strategy = lambda n: NodeAffinitySchedulingStrategy(n, soft=False)  # noqa: E731
        return self.ray.get([probe.options(scheduling_strategy=strategy(n)).remote(paths) for n in nodes])

    def free(self) -> int:
        return 1 << 30  # Ray queues what the cluster cannot run yet

    def busy(self) -> bool:
        return bool(self.inflight)

    def submit(self, run: Run, emit: Listener) -> None:
        self.emit = emit
        gpus = (
            self.gpus_per_run if self.gpus_per_run is not None else (1 if self.gpus and run.cfg.device != "cpu" else 0)
        )
        ref = self.task.options(
            num_cpus=self.cpus_per_run or float(run.cfg.threads or 1),
            num_gpus=gpus,
            max_retries=self.max_retries,
            retry_exceptions=False,
        ).remote(run.cfg, run.key, self.board)
        self.inflight[ref] = run

    def wait(self, emit: Listener) -> None:
        ray = self.ray
        while True:
            ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=0.5)
            self._drain(emit)
            if ready:
                break
        for ref in ready:
            r = self.inflight.pop(ref)
            try:
                event = finish_event(r, ray.get(ref))
            except ray.exceptions.RayTaskError as err:  # the run raised: deterministic, reported once
                cause = getattr(err, "cause", None)
                event = Event("failed", r.key, {"error": one_line(cause if cause is not None else err)})
            except ray.exceptions.RayError as err:  # the worker was lost more than max_retries times
                error = f"worker lost {self.max_retries + 1} times; last: {one_line(err)}"
                event = Event("failed", r.key, {"error": error})
            emit(event)

    def _drain(self, emit: Listener, timeout: float | None = None) -> None:
        for line in self.ray.get(self.board.drain.remote(), timeout=timeout):
            event = Event.from_json(line)
            r = next((r for r in self.inflight.values() if r.key == event.key), None)
            if r is not None and r.state not in ("done", "failed"):
                emit(event)

    def close(self) -> None:
        """An interrupted execution: which runs had started (for the interrupted line), then a KeyboardInterrupt
        in each task (its run unwinds, as a local one does); a local cluster this engine started is shut down."""
        try:
            if self.inflight and self.board is not None and self.emit is not None:
                try:
                    self._drain(self.emit, timeout=5)
                except Exception:  # noqa: BLE001 - the line then counts them as not started
                    pass
            for ref in self.inflight:
                try:
                    self.ray.cancel(ref)
                except Exception:  # noqa: BLE001 - a task that just ended; the others are still cancelled
                    pass
            if self.inflight:
                self.ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=10)
            self.inflight = {}
        finally:
            if self.started:
                self.ray.shutdown()
                self.started = False


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
