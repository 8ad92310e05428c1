"""Where a batch of notebooks is: each run's start, epochs and end, sent from the notebook's kernel to the
``make workbook`` terminal.

The papermill driver names a file in ``$MTLIB_PROGRESS_FILE``; ``run_reported`` (what ``runs.run_ids`` calls)
appends one JSON line per event to it (start, epochs, end; one ``found`` for a run already finished), and the
driver prints them as they come (``follow``). Without the variable (JupyterLab, the CLI, tests) it is a plain
``trainer.run``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mtlib.config.run_config import RunConfig
from mtlib.rundir import read_metrics

ENV = "MTLIB_PROGRESS_FILE"


def run_reported(cfg: RunConfig, callback: Callable[[dict], None] | None = None) -> Path:
    """``trainer.run(cfg, callback)``, reporting start, each epoch's dev mean and the end to ``$MTLIB_PROGRESS_FILE``."""
    from mtlib.train.trainer import run

    path = os.environ.get(ENV)
    if not path:
        return run(cfg, callback=callback)
    total = sum(p.epochs for p in cfg.phase_configs())
    base = {"name": cfg.name, "seed": cfg.seed, "epochs_total": total}
    finished = _finished_metrics(cfg)
    if finished is not None:  # one event, not start and end: after the workbook's pre-run most runs are found
        run_dir = run(cfg, callback=callback)
        _emit(path, {**base, "event": "found", "mean": finished["dev"].get("mean")})
        return run_dir
    done = 0

    def on_row(row: dict) -> None:
        nonlocal done
        if row.get("type") == "eval":
            done += 1
            _emit(
                path,
                {
                    **base,
                    "event": "epoch",
                    "phase": row.get("phase_name", ""),
                    "epoch": row["epoch"],
                    "epochs_done": done,
                    "mean": row.get("mean"),
                },
            )
        if callback is not None:
            callback(row)

    t0 = time.time()
    _emit(path, {**base, "event": "start", "t": t0})
    try:
        run_dir = run(cfg, callback=on_row)
    except BaseException as e:
        _emit(path, {**base, "event": "end", "status": f"failed: {type(e).__name__}", "seconds": time.time() - t0})
        raise
    metrics = read_metrics(run_dir)
    _emit(
        path,
        {
            **base,
            "event": "end",
            "status": "done" if done else "already finished",
            "mean": metrics["dev"].get("mean"),
            "seconds": time.time() - t0,
        },
    )
    return run_dir


def _finished_metrics(cfg: RunConfig) -> dict | None:
    from mtlib.train.identity import run_dir_for  # data checksums are cached: the trainer's own look-up is free

    try:
        return read_metrics(run_dir_for(cfg))
    except (OSError, ValueError):  # none yet, or one that does not read (the run says why)
        return None


def _emit(path: str, event: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:  # one short line per write: the reader never sees half of one
        f.write(json.dumps(event) + "\n")


def follow(path: Path, on_event: Callable[[dict], None], stop: threading.Event, poll_s: float = 0.5) -> None:
    """Call ``on_event`` for each line appended to ``path`` until ``stop`` is set (then read what is left)."""
    pos = 0
    while True:
        finished = stop.is_set()
        if path.exists():
            with open(path, encoding="utf-8") as f:
                f.seek(pos)
                for line in f:
                    if not line.endswith("\n"):
                        break
                    pos += len(line.encode("utf-8"))
                    on_event(json.loads(line))
        if finished:
            return
        stop.wait(poll_s)
