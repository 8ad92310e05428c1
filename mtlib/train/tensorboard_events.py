"""TensorBoard event files of a run, written from its history rows: live (``tensorboard: true``) or afterwards.

``row_scalars`` is the one map from a history.jsonl row to TensorBoard scalars; the live writer (a trainer
callback) and ``convert_run`` (``python -m mtlib tensorboard RUN_DIR...``) both pass every row through
``EventWriter``, so a run converted afterwards holds the same events as one written live. The event file
sits in the run directory beside history.jsonl, so ``tensorboard --logdir outputs/runs`` lists each run as
``<name>-<run id>/seed<k>``. Steps are ``examples_seen`` (they keep counting over phases); wall times are
the run's own (config.yaml's time + the row's ``wall``). A run's finished dev predictions add SST and Quora
confusion matrices as images. Event files are rewritten whole from history.jsonl, never appended to: a
resumed run (whose history was cut back to its checkpoint) or a second conversion leaves one file that
says what history.jsonl says.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from mtlib.config.run_config import RunConfig
from mtlib.rundir import RunDirectory, RunLocked, read_config, read_history
from mtlib.rundir.files import CONFIG, HISTORY
from mtlib.rundir.schema import ROWS
from mtlib import tasks as task_records
from mtlib.data.against_gold import class_names
from mtlib.train.confusion import run_confusion
from mtlib.train.identity import run_dir_for

EVENT_FILES = "events.out.tfevents.*"


def row_scalars(row: dict) -> dict[str, float]:
    """{tag: value} of one history row: train losses and LR, dev scores, sampler probabilities and each task's
    batches in the epoch, gradient conflict diagnostics, final dev scores. Rows of other types (start) and null values (NaN) give none."""
    kind, out = row.get("type"), {}
    if kind == "train":
        out = {f"train_loss/{t}": v for t, v in row.get("loss", {}).items()}
        out["train/lr"] = row.get("lr")
    elif kind in ("eval", "final"):
        group = "dev" if kind == "eval" else "final_dev"
        scores = ROWS[kind].from_json(row, version=1).scores  # the row's keys its record does not declare
        out = {f"{group}/{k}": v for k, v in scores.items() if k != "mean_sts01"}  # as before: not a dev scalar
        out.update({f"sampler/p_{t}": p for t, p in (row.get("probabilities") or {}).items()})
        out.update({f"sampler/epoch_batches_{t}": n for t, n in (row.get("task_counts") or {}).items()})
    elif kind == "grad":
        out = {f"gradients/cosine_{pair.replace('|', '_')}": v for pair, v in row.get("pairs", {}).items()}
        out.update({f"gradients/norm_{t}": v for t, v in row.get("norms", {}).items()})
        out["gradients/conflict_share"] = row.get("conflict_share")
        if "beta" in row:
            out["gradients/beta"] = row["beta"]
    return {tag: float(v) for tag, v in out.items() if isinstance(v, (int, float)) and math.isfinite(v)}


class EventWriter:
    """One event file in ``run_dir``, replacing any earlier ones; rows in, scalars and images out."""

    def __init__(self, run_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter  # the tensorboard package: imported only when used

        self.run_dir = Path(run_dir)
        for old in self.run_dir.glob(EVENT_FILES):
            old.unlink()
        config = self.run_dir / CONFIG
        self.start = config.stat().st_mtime if config.is_file() else 0.0
        self.step = 0
        self.writer = SummaryWriter(log_dir=str(self.run_dir))

    def add(self, row: dict) -> None:
        self.step = int(row.get("examples_seen", self.step))
        walltime = self.start + float(row.get("wall", 0.0))
        for tag, value in row_scalars(row).items():
            self.writer.add_scalar(tag, value, global_step=self.step, walltime=walltime)
        if row.get("type") == "eval":
            self.writer.flush()  # what an interrupted run had reached stays readable

    def add_confusion(self, data_dir: str | None) -> list[str]:
        """The confusion matrix of each classification task's dev prediction file, as images; the tags written."""
        tags = []
        tasks = read_config(self.run_dir).get("tasks") or list(task_records.course())
        for task in (t for t in tasks if task_records.get(t).kind != "regression"):
            matrix = run_confusion(self.run_dir, task, data_dir)
            if matrix is not None:
                self.writer.add_figure(f"confusion/{task}", confusion_figure(task, matrix), global_step=self.step)
                tags.append(f"confusion/{task}")
        return tags

    def close(self) -> None:
        self.writer.close()


def confusion_figure(task: str, matrix):
    """A heat map of counts, gold classes down, predicted across (a matplotlib Figure, no pyplot state)."""
    from matplotlib.figure import Figure

    names = class_names(task)
    fig = Figure(figsize=(2 + 0.6 * len(names), 1.8 + 0.5 * len(names)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center", color="white" if n > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names, fontsize=8, rotation=35)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(f"{task} dev ({int(matrix.sum())})", fontsize=9)
    return fig


def convert_run(run_dir: str | Path) -> int:
    """Write a run's event file from its history.jsonl (confusion images when it has dev predictions); the
    number of rows. Under the run's lock: a run being trained (``RunLocked``) writes its own, live."""
    run_dir = Path(run_dir)
    with RunDirectory(run_dir).lock():
        rows = read_history(run_dir)
        events = EventWriter(run_dir)
        try:
            for row in rows:
                events.add(row)
            if any(r.get("type") == "final" for r in rows):
                events.add_confusion(read_config(run_dir).get("data_dir"))
        finally:
            events.close()
    return len(rows)


def convert_runs(paths: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """Every run directory in ``paths`` (a run directory, or a folder holding some): [(run dir, what was
    done)]; a run another process is training is skipped and said so."""
    found = []
    for path in map(Path, paths):
        runs = [path] if (path / HISTORY).is_file() else sorted(p.parent for p in path.glob(f"**/{HISTORY}"))
        if not runs:
            raise FileNotFoundError(
                f"{path}: no {HISTORY} here or below; expected a run directory "
                "(outputs/runs/<name>-<run id>/seed<k>) or a folder holding some"
            )
        found += runs
    done = []
    for run_dir in found:
        try:
            done.append((run_dir, f"{convert_run(run_dir)} history rows -> event file"))
        except RunLocked as err:
            done.append((run_dir, f"skipped: {err}"))
    return done


def with_tensorboard(cfg: RunConfig, callback: Callable[[dict], None] | None):
    """The trainer's callback, writing event files first when ``cfg.tensorboard`` is on."""
    if not cfg.tensorboard:
        return callback
    live = LiveEvents(cfg)

    def both(row: dict) -> None:
        live(row)
        if callback is not None:
            callback(row)

    return both


class LiveEvents:
    """A trainer callback: on its first row it replays history.jsonl (a resumed run's rows before this one),
    then adds each row as it comes; the final row adds the confusion images and closes the file."""

    def __init__(self, cfg: RunConfig):
        self.cfg, self.events = cfg, None

    def __call__(self, row: dict) -> None:
        if self.events is None:
            self.events = EventWriter(run_dir_for(self.cfg))
            for earlier in read_history(self.events.run_dir):  # history.jsonl already holds this row
                self.events.add(earlier)
        else:
            self.events.add(row)
        if row.get("type") == "final":
            try:  # the run is done but for metrics.json: a drawing problem must not fail it
                self.events.add_confusion(self.cfg.data_dir)
            except (ValueError, OSError) as err:
                warnings.warn(
                    f"TensorBoard confusion images not written ({err}); "
                    f"`python -m mtlib tensorboard {self.events.run_dir}` tries again",
                    stacklevel=2,
                )
            self.events.close()
            self.events = None
