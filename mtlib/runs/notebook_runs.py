"""The training runs a notebook will ask for, from what it declares, without running it.

A notebook trains its own rows (``notebook:`` in params/experiments.yaml, ``runs.run_rows``) and the rows it
declares as comparators (``notebooks:`` there, ``runs.run_comparators``), with the values of its parameters
cell (``seeds``, ``rows``, ``overrides``, ``out_dir``: its defaults, papermill's injected values on top).
``make workbook`` trains them all first on worker processes (``mtlib.runs.pool``); the notebooks then find them
finished and only load and plot. A run a notebook asks for in another way (``runs.run_ids`` with rows of its
own choosing, the panel) trains in its kernel, as it always did.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import nbformat

from mtlib.experiments.rows import comparators_for, rows_for
from mtlib.runs.executor import Run
from mtlib.runs.plan import merge, plan


def notebook_runs(notebooks: list[Path], profile: str, parameters: dict | None = None) -> list[Run]:
    """Every run the notebooks declare, parents first, each once."""
    out: dict[str, Run] = {}
    for path in notebooks:
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception:  # noqa: BLE001 - not a notebook nbformat reads: papermill reports it when it runs it
            continue
        env = {**parameter_defaults(nb), "profile": profile, **(parameters or {})}  # as papermill injects them
        name = path.stem
        only = env.get("rows")
        ids = [r["id"] for r in rows_for(name) if not only or r["id"] in only] + comparators_for(name)
        if not ids:
            continue
        overrides = dict(env.get("overrides") or {})  # as the notebooks pass them: out_dir, then **overrides
        if env.get("out_dir") is not None:
            overrides = {"out_dir": env["out_dir"], **overrides}
        runs = plan(profile, ids, env.get("seeds"), **overrides)
        for r in runs:
            r.cfg = r.cfg.replace(progress=False)  # not part of a run's identity; a worker has no terminal
        merge(out, runs)
    return list(out.values())


def parameter_defaults(nb) -> dict[str, Any]:
    """The literal assignments of the cell tagged ``parameters`` (the notebook's declared parameters)."""
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    found = {}
    for node in ast.parse(cell.source).body if cell is not None else []:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found
