"""Reading finished (or running) run directories: no torch, no trainer."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import yaml

from mtlib.rundir import schema
from mtlib.rundir.files import CONFIG, HISTORY, METRICS


def read_history(run_dir: str | Path, kind: str | None = None) -> list[dict]:
    """The rows of a run's history.jsonl (of one ``kind``: "eval", "grad", ...), each checked against its record
    (``mtlib.rundir.schema``): a malformed row is a ``SchemaError`` naming the file, line and field. A torn
    last line (a kill mid-write, or a row being written as we read) is left out."""
    path = Path(run_dir) / HISTORY
    lines = path.read_text(encoding="utf-8").splitlines()
    rows, version = [], 1
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                continue
            raise schema.SchemaError(f"{path} line {number}: not valid JSON ({err.msg})") from None
        where = f"{path} line {number}"
        if isinstance(row, dict) and row.get("type") == "start":  # the start row holds the file's version
            version = schema.version_of(row, where)
        schema.parse_row(row, version, where)
        if kind is None or row["type"] == kind:
            rows.append(row)
    return rows


def read_metrics(run_dir: str | Path) -> dict:
    """A finished run's metrics.json as a dict, checked against ``schema.Metrics`` (one line if it does not fit)."""
    path = Path(run_dir) / METRICS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from None
    version = schema.version_of(data, str(path)) if isinstance(data, dict) else schema.SCHEMA
    schema.Metrics.from_json(data, version, str(path))
    return data


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
