"""``params/experiments.yaml``: every row of the paper's results table, its config delta, notebook and numbers."""

from __future__ import annotations

import functools
from pathlib import Path

from mtlib.config.run_config import PARAMS_DIR
from mtlib.config.types import ConfigError
from mtlib.config.yamlfile import read_yaml

EXPERIMENTS = PARAMS_DIR / "experiments.yaml"
ROW_KEYS = ("id", "label", "notebook", "paper", "config")


def load_experiments(path: str | Path | None = None) -> list[dict]:
    path = Path(path) if path else EXPERIMENTS
    stat = path.stat() if path.is_file() else None
    return _load(str(path), stat.st_mtime_ns if stat else 0)


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> list[dict]:
    data = read_yaml(path)
    rows = data.get("rows")
    if not isinstance(rows, list):
        raise ConfigError(f"{path}: expected a top-level key 'rows' holding a list")
    seen = set()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ConfigError(f"{path}: rows[{i}] must be a mapping")
        for key in ROW_KEYS:
            if key not in row:
                raise ConfigError(f"{path}: rows[{i}] lacks key {key!r}")
        if row["id"] in seen:
            raise ConfigError(f"{path}: rows[{i}] repeats id {row['id']!r}")
        if row.get("beyond_paper", False) not in (True, False):
            raise ConfigError(
                f"{path}: rows[{i}] ({row['id']}) has beyond_paper {row['beyond_paper']!r}; expected true or false"
            )
        if row.get("beyond_paper") and row["paper"]:  # the paper ran none of these: no numbers to compare with
            raise ConfigError(
                f"{path}: rows[{i}] ({row['id']}) is beyond_paper but has paper numbers; expected paper: {{}}"
            )
        seen.add(row["id"])
    for row in rows:
        if row.get("init_from") and row["init_from"] not in seen:
            raise ConfigError(f"{path}: row {row['id']!r} has init_from {row['init_from']!r}, which is no row")
    _check_notebooks(path, data.get("notebooks"), seen)
    return rows


def _check_notebooks(path: str, notebooks, rows: set) -> None:
    if notebooks is None:
        return
    if not isinstance(notebooks, dict):
        raise ConfigError(f"{path}: notebooks must be a mapping of notebook name to {{comparators: [row, ...]}}")
    for name, entry in notebooks.items():
        if not isinstance(entry, dict) or set(entry) - {"comparators"}:
            raise ConfigError(f"{path}: notebooks.{name} must be a mapping with the key 'comparators'")
        comparators = entry.get("comparators", [])
        if not isinstance(comparators, list) or not all(isinstance(c, str) for c in comparators):
            raise ConfigError(f"{path}: notebooks.{name}.comparators must be a list of row ids")
        unknown = [c for c in comparators if c not in rows]
        if unknown:
            raise ConfigError(f"{path}: notebooks.{name}.comparators names {unknown[0]!r}, which is no row")


def comparators_for(notebook: str, path: str | Path | None = None) -> list[str]:
    """The rows of other notebooks that ``notebook`` also trains and plots (``notebooks:`` in experiments.yaml),
    declared so that ``make workbook`` trains them before the notebook runs."""
    path = Path(path) if path else EXPERIMENTS
    load_experiments(path)  # checks the declarations
    entry = (read_yaml(path).get("notebooks") or {}).get(notebook) or {}
    return list(entry.get("comparators", []))


def anchors(path: str | Path | None = None) -> dict:
    """The named phase templates of experiments.yaml (``pretrain``, ``finetune``, ...)."""
    return dict(read_yaml(Path(path) if path else EXPERIMENTS).get("anchors") or {})


def get_row(row_id: str, experiments: list[dict] | None = None) -> dict:
    rows = experiments if experiments is not None else load_experiments()
    for row in rows:
        if row["id"] == row_id:
            return row
    raise KeyError(f"no row {row_id!r} in params/experiments.yaml; rows: {', '.join(r['id'] for r in rows)}")


def rows_for(notebook: str, experiments: list[dict] | None = None) -> list[dict]:
    rows = experiments if experiments is not None else load_experiments()
    return [r for r in rows if r["notebook"] == notebook]


def paper_rows(experiments: list[dict] | None = None) -> list[dict]:
    """The rows of the paper's table (not those marked ``beyond_paper``)."""
    return [r for r in (experiments if experiments is not None else load_experiments()) if not r.get("beyond_paper")]


def parent_rows(row: dict) -> list[str]:
    return [row["init_from"]] if row.get("init_from") else []
