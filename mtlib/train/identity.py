"""A run's identity: the short id naming its folder, hashed from exactly what changes its results.

That is the config's ``settings()`` (training settings, phase by phase, without the ones a phase ignores),
the sha256 of every data file the run reads (its content, hashed again on every look-up: the files are
small), the resolved device type and precision (``precision: auto`` trains in bf16 on one machine and fp32
on another: two different runs), and, only where a run has them (so other runs keep their ids), the content
of its other inputs: a folder backbone's files, the ``init_checkpoint`` it starts from, and what EDA
augmentation draws on (nlpaug's version and the WordNet and tagger data).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mtlib import tasks as task_records
from mtlib.config.run_config import RunConfig, resolve_path
from mtlib.data.augment_cache import eda_inputs
from mtlib.data.nltk_resources import NLTKDataError, ensure_nltk_data
from mtlib.data.sources import sha256_file, sha256_file_cached
from mtlib.rundir.checkpoint import file_digest
from mtlib.train.run_data import files_read
from mtlib.machine.runtime import resolve_device, resolve_precision


def run_identity(cfg: RunConfig) -> dict:
    device = resolve_device(cfg.device)
    identity = {
        "settings": cfg.settings(),
        "data": data_checksums(cfg),
        "device_type": device.type,
        "precision": resolve_precision(cfg.precision, device),
    }
    inputs = input_checksums(cfg)
    return {**identity, "inputs": inputs} if inputs else identity


def run_id(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def run_dir_for(cfg: RunConfig, identity: dict | None = None) -> Path:
    """``<out_dir>/<name>-<run id>/seed<k>``; a relative out_dir is relative to the repository root, so
    JupyterLab (started in notebooks/), papermill and the CLI all write to the same place."""
    identity = run_identity(cfg) if identity is None else identity
    return resolve_path(cfg.out_dir) / f"{cfg.name}-{run_id(identity)}" / f"seed{cfg.seed}"


def data_checksums(cfg: RunConfig) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in files_read(cfg)}


def input_checksums(cfg: RunConfig) -> dict:
    """The content of the run's inputs besides the data files, for the ones it has."""
    out = {}
    backbone = Path(cfg.backbone).expanduser()
    if backbone.is_dir():  # a local folder: its weights may be replaced under the same path
        out["backbone"] = folder_checksums(backbone)
    if cfg.init_checkpoint:
        path = Path(cfg.init_checkpoint)  # missing until its parent run has trained (the trainer then refuses it)
        out["init_checkpoint"] = sha256_file_cached(path, file_digest) if path.is_file() else "missing"
    if cfg.augment:
        out["eda"] = _eda_inputs(cfg.data_dir)
    declared = task_records.declarations_digest(cfg.tasks)  # tasks of a task_file: what they declare counts
    if declared:
        out["tasks"] = declared
    return out


def folder_checksums(folder: Path) -> dict[str, str]:
    return {p.name: sha256_file_cached(p) for p in sorted(folder.iterdir()) if p.is_file()}


def _eda_inputs(data_dir: str | None) -> dict:
    try:
        ensure_nltk_data(data_dir)  # where the run's augmentation will look
    except NLTKDataError:
        pass  # "missing" in the identity; augmentation itself says what to do
    return eda_inputs()
