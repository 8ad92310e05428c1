"""Reading finished (or running) run directories: no torch, no trainer."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import yaml

from mtlib.rundir.files import CONFIG, HISTORY, METRICS


def read_history(run_dir: str | Path) -> list[dict]:
    """The rows of a run's history.jsonl (a torn last line, from a kill mid-write, is left out)."""
    path = Path(run_dir) / HISTORY
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def read_metrics(run_dir: str | Path) -> dict:
    """A finished run's metrics.json as a dict."""
    path = Path(run_dir) / METRICS
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from None


def run_name(run_dir: str | Path) -> str:
    """The run (row) name of a run directory ``<out_dir>/<name>-<run id>/seed<k>``."""
    return Path(run_dir).parent.name.rsplit("-", 1)[0]


def collect_metrics(out_dir: str | Path) -> list[dict]:
    """Every finished run's metrics.json under ``out_dir`` (with its ``run_dir``)."""
    rows = []
    for path in sorted(Path(out_dir).glob(f"*/seed*/{METRICS}")):
        m = read_metrics(path.parent)
        m["run_dir"] = str(path.parent)
        rows.append(m)
    return rows


def read_config(run_dir: str | Path) -> dict:
    """The config.yaml a run wrote (its resolved RunConfig as plain data); {} when there is none."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return {}
    st = path.stat()  # a run deleted and trained again writes a new file: a new inode and change time
    return dict(_read_config(str(path), st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=None)
def _read_config(path: str, *stat: int) -> dict:  # re-read only when the file changed
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return data if isinstance(data, dict) else {}
