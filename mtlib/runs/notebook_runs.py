"""The training runs a notebook will ask for, read from its code without running it.

``make workbook`` trains them first on worker processes (``mtlib.runs.pool``); the notebooks then find
them finished and only load and plot. A notebook's calls ``run_rows(NOTEBOOK, profile, ...)`` and
``run_ids([ROW, ...], profile, ...)`` are read with ``ast``; their arguments may be literals or names of the
notebook's parameters (the parameters cell's defaults, papermill's injected values on top). A call with any
other argument, on another engine, or that does not resolve (a row that is no row) is left out: the notebook
trains those runs itself, as it always did, and reports its own error.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import nbformat

from mtlib.notebook import runs as runs_module
from mtlib.experiments.rows import rows_for
from mtlib.runs.sweep import SweepRun, plan

CALLS = ("run_rows", "run_ids")


class Unreadable(Exception):
    """An argument that is not a literal or a parameter's name."""


def notebook_runs(notebooks: list[Path], profile: str, parameters: dict | None = None) -> list[SweepRun]:
    """Every run the notebooks' ``run_rows``/``run_ids`` calls will train, parents first, each once."""
    out: dict[str, SweepRun] = {}
    for path in notebooks:
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception:  # noqa: BLE001 - not a notebook nbformat reads: papermill reports it when it runs it
            continue
        env = {**parameter_defaults(nb), "profile": profile, **(parameters or {})}  # as papermill injects them
        for call in calls_in(nb):
            try:
                planned = plan_call(call, env)
            except (Unreadable, ValueError, KeyError, TypeError, FileNotFoundError):
                continue
            _merge(out, planned)
    return list(out.values())


def parameter_defaults(nb) -> dict[str, Any]:
    """The literal assignments of the cell tagged ``parameters``."""
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    found = {}
    for node in _parse(cell.source).body if cell is not None else []:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def calls_in(nb) -> list[ast.Call]:
    """The ``run_rows``/``run_ids`` calls of the code cells, in cell order."""
    found = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            found += [
                node
                for node in ast.walk(_parse(cell.source))
                if isinstance(node, ast.Call) and _name(node.func) in CALLS
            ]
    return found


def plan_call(call: ast.Call, env: dict) -> list[SweepRun]:
    """The runs of one call: its arguments bound as ``runs.run_rows``/``run_ids`` would bind them."""
    name = _name(call.func)
    args = [_value(a, env) for a in call.args]
    kwargs = {}
    for kw in call.keywords:
        value = _value(kw.value, env)
        if kw.arg is None:  # **overrides
            if not isinstance(value, dict):
                raise Unreadable(ast.unparse(kw.value))
            kwargs.update(value)
        else:
            kwargs[kw.arg] = value
    bound = inspect.signature(getattr(runs_module, name)).bind(*args, **kwargs).arguments
    if bound.get("callback") is not None or bound.get("engine", "local") != "local":
        raise Unreadable(name)
    overrides = dict(bound.get("overrides", {}))
    if name == "run_rows":
        only = bound.get("only")
        ids = [r["id"] for r in rows_for(bound["notebook"]) if not only or r["id"] in only]
    else:
        ids = list(bound["ids"])
    runs = plan(bound["profile"], ids, bound.get("seeds"), **overrides)
    for r in runs:
        r.cfg = r.cfg.replace(progress=False)  # not part of a run's identity; a worker has no terminal
    return runs


def _merge(out: dict[str, SweepRun], planned: list[SweepRun]) -> None:
    """Add ``planned`` to ``out``: a run already there is kept once; the same key with other settings (another
    notebook's overrides) gets a key of its own, and its children follow it."""
    renamed = {}
    for r in planned:
        key = r.key
        while key in out and out[key].cfg != r.cfg:
            key += "'"
        renamed[r.key] = key
        if key not in out:
            out[key] = SweepRun(key, r.cfg, [renamed[p] for p in r.parents])


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _value(node: ast.expr, env: dict) -> Any:
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise Unreadable(node.id)
        return env[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(e, env) for e in node.elts]
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_value(k, env): _value(v, env) for k, v in zip(node.keys, node.values)}
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise Unreadable(ast.unparse(node)) from None


def _parse(source: str) -> ast.Module:
    """A cell's code, IPython's magics (``%matplotlib``, ``!ls``) turned into Python first."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])
