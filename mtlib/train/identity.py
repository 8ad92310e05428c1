"""A run's identity: the short id naming its folder, hashed from exactly what changes its results.

That is the config's ``settings()`` (training settings, phase by phase, without the ones a phase ignores),
the sha256 of every data file the run reads (not the folder they sit in), and the resolved device type and
precision (``precision: auto`` trains in bf16 on one machine and fp32 on another: two different runs).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from mtlib.config import RunConfig, resolve_path
from mtlib.data.sources import sha256_file
from mtlib.train.run_data import files_read
from mtlib.train.runtime import resolve_device, resolve_precision


def run_identity(cfg: RunConfig) -> dict:
    device = resolve_device(cfg.device)
    return {"settings": cfg.settings(), "data": data_checksums(cfg), "device_type": device.type,
            "precision": resolve_precision(cfg.precision, device)}


def run_id(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def run_dir_for(cfg: RunConfig, identity: dict | None = None) -> Path:
    """``<out_dir>/<name>-<run id>/seed<k>``; a relative out_dir is relative to the repository root, so
    JupyterLab (started in notebooks/), papermill and the CLI all write to the same place."""
    identity = run_identity(cfg) if identity is None else identity
    return resolve_path(cfg.out_dir) / f"{cfg.name}-{run_id(identity)}" / f"seed{cfg.seed}"


def data_checksums(cfg: RunConfig) -> dict[str, str]:
    return {p.name: _sha256(str(p)) for p in files_read(cfg)}


def _sha256(path: str) -> str:
    st = os.stat(path)
    return _sha256_cached(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:  # re-read only when the file changed
    return sha256_file(path)
