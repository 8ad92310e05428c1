"""Papermill's parameters checked where the notebooks read them: unknown names and bad values stop in one line.

Papermill only warns about a parameter the notebook does not have (``-p lr -1``: "Passed unknown parameter: lr",
then the notebook runs on its defaults and exits 0) and passes any value through (``-p progress notabool``).
Every notebook calls ``check_parameters(globals())`` in the cell after its ``parameters`` cell. It reads the
kernel's cell history (``In``): the last cell that starts with ``# papermill parameters`` (the notebook's
parameters cell, which declares the names and their defaults) and papermill's ``injected-parameters`` cell
(``# Parameters``) run after it; the names each assigns are read with ``ast``. No list per notebook: the
parameters cell is the list. A name the parameters cell does not assign is refused with the valid names; a
value must have its default's type (``None`` defaults take anything; an int does for a float), and the common
parameters are checked against the project: ``profile`` must load, ``seeds`` be a list of ints, ``rows`` and
``*_rows`` lists of row ids (``rows`` of this notebook, when it names itself), ``overrides`` config keys and
values the resolver accepts. Outside papermill (no injected cell, e.g. JupyterLab) it does nothing.

The error, ``ParameterError``, shows as its one line in the notebook (IPython calls ``_render_traceback_``
instead of drawing a traceback), and papermill stops there with ``PapermillExecutionError`` (non-zero exit).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Mapping
from typing import Any

from mtlib.config.types import ConfigError

PARAMETERS_MARK = "# papermill parameters"  # the first line of every notebook's parameters cell
INJECTED_MARK = "# Parameters"  # the first line of papermill's injected-parameters cell


class ParameterError(ConfigError):
    """Bad papermill parameters: every problem on one line."""

    def __init__(self, problems: list[str] | str):
        problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(" ".join(str(p).split()) for p in problems))

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"{type(self).__name__}: {self}"]


def check_parameters(namespace: Mapping[str, Any] | None = None, notebook: str | None = None) -> None:
    """Refuse (``ParameterError``) papermill parameters that the notebook's parameters cell does not assign, or
    whose values are bad; do nothing when papermill injected none. ``namespace``: the notebook's ``globals()``
    (default: the running IPython's); ``notebook``: its name (``02_baselines``), for ``rows``. Being every
    notebook's first mtlib call, it also makes expected data notes (skipped malformed rows) one quiet line
    each, not a red box (``mtlib.notebook.notes``)."""
    if "ipykernel" in sys.modules:  # in a kernel only: a script or test keeps its own logging
        from mtlib.notebook.notes import show_data_notes

        show_data_notes()
    if namespace is None:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            return
        namespace = shell.user_ns
    found = cells_from_history(namespace.get("In") or [])
    if found is None:
        return
    declared, injected = found
    problems = []
    unknown = [name for name in injected if name not in declared]
    if unknown:
        names = ", ".join(map(repr, unknown))
        what = (
            f"parameter {names} is not a parameter" if len(unknown) == 1 else f"parameters {names} are not parameters"
        )
        problems.append(f"{what} of this notebook; its parameters: {', '.join(declared)}")
    problems += [
        p
        for name in declared
        if name in injected  # in the parameters cell's order
        for p in [check_value(name, namespace.get(name), declared[name], namespace, notebook)]
        if p
    ]
    if problems:
        raise ParameterError(problems)


def cells_from_history(history: list[str]) -> tuple[dict[str, Any], list[str]] | None:
    """``({declared name: default}, [injected names])`` from the kernel's cell history: the last parameters
    cell and the last injected-parameters cell; None without both (not run by papermill)."""
    sources = [s for s in history if isinstance(s, str)]
    params = _last(sources, PARAMETERS_MARK)
    injected = _last(sources, INJECTED_MARK)
    if params is None or injected is None:
        return None
    return _assigned(params), list(_assigned(injected))


def check_value(
    name: str, value: Any, default: Any, namespace: Mapping[str, Any] | None = None, notebook: str | None = None
) -> str | None:
    """The problem with ``name = value`` (one line), or None."""
    given = f"parameter {name!r} = {value!r}"
    if name == "profile":
        return _check_profile(given, value)
    if name == "seeds":
        if value is None or (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(s, int) and not isinstance(s, bool) for s in value)
        ):
            return None
        return f"{given}: expected None (the profile's seeds) or a list of ints, e.g. [1, 2]{_yaml_hint(value)}"
    if name == "rows" or name.endswith("_rows"):
        return _check_rows(given, value, notebook if name == "rows" else None, none_ok=default is None)
    if name == "overrides":
        return _check_overrides(given, value, (namespace or {}).get("profile"))
    return _check_type(given, value, default)


def _check_type(given: str, value: Any, default: Any) -> str | None:
    if default is None or default is _NOT_LITERAL:
        return None
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "True or False"
    elif isinstance(default, int):
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an int"
    elif isinstance(default, float):
        ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, want = isinstance(value, str), "a string"
    elif isinstance(default, (list, tuple)):
        ok, want = isinstance(value, (list, tuple)), "a list"
    elif isinstance(default, dict):
        ok, want = isinstance(value, dict), "a mapping"
    else:
        return None
    if ok:
        return None
    return f"{given}: expected {want}, as its default {default!r}{_yaml_hint(value)}"


def _check_profile(given: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"{given}: expected a profile name (params/profiles/<name>.yaml) or a YAML file"
    from mtlib.experiments.resolve import load_profile

    try:
        load_profile(value)
    except ConfigError as err:
        return f"parameter 'profile': {'; '.join(err.errors)}"
    return None


def _check_rows(given: str, value: Any, notebook: str | None, none_ok: bool) -> str | None:
    from mtlib.experiments.rows import load_experiments, rows_for

    if value is None and none_ok:
        return None
    pool = rows_for(notebook) if notebook else load_experiments()
    ids = [r["id"] for r in pool]
    where = f"rows of {notebook}" if notebook else "row ids of params/experiments.yaml"
    if not isinstance(value, (list, tuple)) or not all(isinstance(r, str) for r in value):
        lead = "None (every row of this notebook) or " if none_ok else ""
        return f"{given}: expected {lead}a list of row ids{_yaml_hint(value)}; {where}: {', '.join(ids)}"
    bad = [r for r in value if r not in ids]
    if bad:
        return (
            f"{given}: {', '.join(map(repr, bad))} {'is' if len(bad) == 1 else 'are'} not among the {where}: "
            f"{', '.join(ids)}"
        )
    return None


def _check_overrides(given: str, value: Any, profile: Any) -> str | None:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        return f"{given}: expected a mapping of config keys, e.g. {{'epochs': 2}}{_yaml_hint(value)}"
    taken = [k for k in value if k in RUN_ARGUMENTS]
    if taken:
        return (
            f"{given}: {', '.join(map(repr, taken))} cannot be overridden here (use the notebook's seeds "
            "and rows parameters)"
        )
    from mtlib.experiments.resolve import load_profile, resolve_config

    try:
        load_profile(profile)
    except (ConfigError, TypeError):
        return None  # the profile's own problem is reported; without it the overrides cannot be resolved
    try:  # the keys and values as every run of the notebook will resolve them
        resolve_config(profile, **value)
    except ConfigError as err:
        return "parameter 'overrides': " + "; ".join(e.removeprefix("overrides: ") for e in err.errors)
    return None


def _yaml_hint(value: Any) -> str:
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        return " (papermill's -p passes text: give lists and mappings with -y, e.g. -y 'seeds: [1, 2]')"
    return ""


RUN_ARGUMENTS = ("seed", "row", "source", "inline_parent", "seeds", "only", "callback", "engine", "address")
# keywords of resolve_config / runs.run_rows / runs.run_ids that the notebooks' **overrides would collide with
_NOT_LITERAL = object()  # a default that is not a literal (e.g. Path("x")): its type is not checked


def _last(sources: list[str], mark: str) -> str | None:
    """The last cell whose first line is ``mark`` (the parameters cell may say more after it)."""
    for source in reversed(sources):
        first = source.lstrip().split("\n", 1)[0].rstrip()
        if first == mark or (mark == PARAMETERS_MARK and first.startswith(mark)):
            return source
    return None


def _assigned(source: str) -> dict[str, Any]:
    """The names a cell assigns at its top level, in order, with their literal values."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return {}
    found: dict[str, Any] = {}
    for node in body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign) and node.value is not None
            else []
        )
        for target in targets:
            if isinstance(target, ast.Name):
                try:
                    found[target.id] = ast.literal_eval(node.value)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    found[target.id] = _NOT_LITERAL
    return found
