"""The run directory: its file names, atomic writes, the lock, checkpoints, and readers.

The trainer writes a run directory through ``RunDirectory``; the study layer (results, plots, widgets) only
reads it through ``read``. This package imports nothing from the rest of mtlib, so readers never pull in
the trainer.

    <out_dir>/<name>-<run id>/seed<k>/
        config.yaml        the resolved config (written first, atomically)
        identity.json      what the run id hashes: settings, data checksums, device type, precision
        history.jsonl      one JSON row per event (train losses, dev scores, gradient diagnostics; ``schema``)
        last.pt            resume point, end of every epoch (removed when the run finishes)
        phase<i>-best.pt   the best model of an earlier phase (the hand-over to the next phase)
        best.pt            the best model of the last phase: the run's model
        failed.json        why the run stopped (a numeric fault, an error); removed when it resumes
        metrics.json       written last: "finished" means complete (``schema.Metrics``)
        predictions/       course-format prediction files
        .lock              held (flock) by the one process working on the run
"""

from mtlib.rundir.checkpoint import CheckpointError, check_fits, load_checkpoint, model_state, save_checkpoint
from mtlib.rundir.atomic import atomic_write
from mtlib.rundir.files import RunDirectory, RunLocked
from mtlib.rundir.read import collect_metrics, read_config, read_history, read_metrics, run_name
from mtlib.rundir.schema import SchemaError

__all__ = [
    "RunDirectory",
    "RunLocked",
    "atomic_write",
    "CheckpointError",
    "check_fits",
    "load_checkpoint",
    "model_state",
    "save_checkpoint",
    "collect_metrics",
    "read_config",
    "read_history",
    "read_metrics",
    "run_name",
    "SchemaError",
]
