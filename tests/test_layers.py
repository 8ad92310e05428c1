"""The package's layers: each folder imports only from the layers below it, and no module imports itself back
through any chain of imports (function-level imports count). Checked on the source; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mtlib"
# Each layer and the lower layers it may import (a layer may always import itself), bottom first. The top
# (cli, bench, __main__ and the package root) may import anything.
LAYERS = {
    "mtlib.tasks": (),  # what a task is: everything may read it
    "mtlib.rundir": (),  # the run directory's files and formats
    "mtlib.data": ("mtlib.tasks", "mtlib.rundir"),  # atomic writes for caches
    "mtlib.model": ("mtlib.tasks",),
    "mtlib.methods": (),  # gradient methods, loss weightings, SMART, samplers: plain torch
    "mtlib.machine": ("mtlib.rundir",),  # the measured precision is cached atomically
    "mtlib.config": ("mtlib.tasks", "mtlib.data", "mtlib.model", "mtlib.methods", "mtlib.machine"),
    "mtlib.train": (
        "mtlib.tasks",
        "mtlib.rundir",
        "mtlib.data",
        "mtlib.model",
        "mtlib.methods",
        "mtlib.machine",
        "mtlib.config",
    ),
    # a row with init_from names its parent's run directory: resolution needs the run identity
    "mtlib.experiments": ("mtlib.tasks", "mtlib.config", "mtlib.train.identity"),
    "mtlib.runs": (
        "mtlib.tasks",
        "mtlib.rundir",
        "mtlib.data",
        "mtlib.model",  # packed runs compute the members' models as one (mtlib.runs.pack)
        "mtlib.machine",
        "mtlib.config",
        "mtlib.train",
        "mtlib.experiments",
    ),
    # read-only: reads run directories, never trains (no mtlib.train)
    "mtlib.results": (
        "mtlib.tasks",
        "mtlib.rundir",
        "mtlib.data",
        "mtlib.methods",
        "mtlib.config",
        "mtlib.experiments",
    ),
    "mtlib.notebook": (
        "mtlib.tasks",
        "mtlib.rundir",
        "mtlib.config",
        "mtlib.train",
        "mtlib.experiments",
        "mtlib.runs",
        "mtlib.results",
    ),
}
ROOT_NAMES = ("mtlib.TASKS", "mtlib.__version__")  # the package root's constants, readable from any layer


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every mtlib module a file imports, at any depth of the file; ``from mtlib.train import trainer`` counts
    as mtlib.train.trainer, a name that is no submodule as its package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mtlib"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in MODULES or sub in ROOT_NAMES:
                    found.add(sub)
                else:
                    found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mtlib")}
    return found


GRAPH = {module: _imports(path) - set(ROOT_NAMES) for module, path in MODULES.items()}


def _layer(module: str) -> str | None:
    return next((p for p in LAYERS if module == p or module.startswith(p + ".")), None)


def _within(target: str, prefixes) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def test_the_layers_are_the_folders():
    """Every module but the top sits in a layer, and every layer is a module or folder that exists."""
    top = {"mtlib", "mtlib.__main__", "mtlib.cli"}
    assert all(p in MODULES for p in LAYERS), [p for p in LAYERS if p not in MODULES]
    strays = [m for m in MODULES if _layer(m) is None and m not in top and not m.startswith("mtlib.bench")]
    assert not strays, f"modules outside every layer: {strays}"


def test_a_layer_allows_only_layers_below_it():
    order = list(LAYERS)
    for layer, allowed in LAYERS.items():
        above = [a for a in allowed if order.index(_layer(a)) >= order.index(layer)]
        assert not above, f"{layer} allows {above}, not below it"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_stay_in_their_layer(module):
    layer = _layer(module)
    if layer is None:  # the top: cli, bench, __main__, the package root
        return
    bad = sorted(t for t in GRAPH[module] if not _within(t, (layer, *LAYERS[layer])))
    assert not bad, f"{module} imports {bad}, above its layer ({layer})"


def test_no_import_cycles_at_any_depth():
    """Tarjan's strongly connected components over every import, function-level ones included: a cycle closed
    by an import inside a function is still a cycle."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in GRAPH:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_cycle_check_finds_a_cycle_closed_in_a_function(tmp_path, monkeypatch):
    """The check above is not vacuous: two modules importing each other, one inside a function, are found."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from mtlib.runs import b\n")
    b.write_text("def f():\n    from mtlib.runs import a\n")
    monkeypatch.setitem(MODULES, "mtlib.runs.a", a)
    monkeypatch.setitem(MODULES, "mtlib.runs.b", b)
    monkeypatch.setitem(GRAPH, "mtlib.runs.a", _imports(a))
    monkeypatch.setitem(GRAPH, "mtlib.runs.b", _imports(b))
    with pytest.raises(AssertionError, match="mtlib.runs.a"):
        test_no_import_cycles_at_any_depth()


def test_no_import_time_side_effects():
    """Importing a module defines things: no logging handlers, backend switches or signal handlers at the top
    level of any module (they belong in the function a notebook or command calls first)."""
    calls = ("addHandler", "use", "signal", "basicConfig", "set_start_method", "filterwarnings", "setLevel")

    def top_level(body):  # the module's statements, into if/try/with blocks but not into functions or classes
        for node in body:
            yield node
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    yield from top_level(getattr(node, field, []) or [])

    found = []
    for module, path in MODULES.items():
        for node in top_level(ast.parse(path.read_text()).body):
            call = node.value if isinstance(node, ast.Expr) else None
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in calls:
                found.append(f"{module}: {ast.unparse(call)}")
    assert not found, found
