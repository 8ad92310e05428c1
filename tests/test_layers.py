"""The package's layers: a layer imports only from the layers below it (checked on the source, no imports run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mtlib"
# module prefix -> the mtlib modules it may import (prefixes); "mtlib" alone is the package root (TASKS)
ALLOWED = {
    "mtlib.tasks": (),  # what a task is: the bottom, everything may read it
    "mtlib.rundir": ("mtlib.rundir",),
    "mtlib.data": ("mtlib.data", "mtlib.rundir", "mtlib.tasks"),  # atomic writes for caches
    "mtlib.model": ("mtlib.model", "mtlib.tasks"),
    # the leaf modules of training, whose allowed values config.py collects
    "mtlib.train.samplers": (),
    "mtlib.train.smart": (),
    "mtlib.train.runtime": ("mtlib.train.capability", "mtlib.rundir"),
    "mtlib.train.capability": ("mtlib.rundir",),
    "mtlib.train.freeze": ("mtlib.model",),
    "mtlib.train.gradients": ("mtlib.train.gradients",),
    "mtlib.train.loss_weighting": ("mtlib.train.gradients",),
    "mtlib.configtypes": (),
    "mtlib.settings": ("mtlib.configtypes",),  # a setting's description (field metadata), read by the checks and config
    "mtlib.configchecks": ("mtlib.configtypes", "mtlib.settings", "mtlib.tasks"),
    "mtlib.config": (
        "mtlib.tasks",
        "mtlib.configtypes",
        "mtlib.settings",
        "mtlib.configchecks",
        "mtlib.data",
        "mtlib.model",
        "mtlib.train.freeze",
        "mtlib.train.gradients",
        "mtlib.train.loss_weighting",
        "mtlib.train.runtime",
        "mtlib.train.capability",
        "mtlib.train.samplers",
        "mtlib.train.smart",
        "mtlib.study.resolve",
    ),
    "mtlib.train": (
        "mtlib.tasks",
        "mtlib.config",
        "mtlib.configtypes",
        "mtlib.data",
        "mtlib.model",
        "mtlib.rundir",
        "mtlib.train",
    ),
    "mtlib.study.plots": (
        "mtlib.tasks",
        "mtlib.study.plots",
        "mtlib.data",
        "mtlib.rundir",
        "mtlib.train.samplers",
        "mtlib.train.gradients",
        "mtlib.config",
    ),
    "mtlib.study": (
        "mtlib.tasks",
        "mtlib.config",
        "mtlib.configtypes",
        "mtlib.data",
        "mtlib.rundir",
        "mtlib.study",
        "mtlib.train.identity",
        "mtlib.train.trainer",
        "mtlib.train.samplers",
        "mtlib.train.gradients",
        "mtlib.train.stop",
        "mtlib.train.runtime",
        "mtlib.train.shared_phases",
    ),
}
READ_ONLY = ("mtlib.study.results", "mtlib.study.tables", "mtlib.study.plots")  # read run directories, never train


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path))
    return out


def _imports(path: Path) -> set[str]:
    """Every mtlib module a file imports; ``from mtlib.train import samplers`` counts as mtlib.train.samplers."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mtlib"):
            package = ROOT.parent.joinpath(*node.module.split("."))
            if package.is_dir():  # names may be submodules: count each that is one, and the package for the rest
                subs = {
                    a.name for a in node.names if (package / f"{a.name}.py").is_file() or (package / a.name).is_dir()
                }
                found |= {f"{node.module}.{n}" for n in subs}
                if len(subs) < len(node.names) and node.module != "mtlib":
                    found.add(node.module)
                if node.module == "mtlib":
                    found |= {f"mtlib.{a.name}" for a in node.names if a.name not in subs}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mtlib")}
    return found


def _rule(module: str) -> tuple[str, ...] | None:
    best = max((p for p in ALLOWED if module == p or module.startswith(p + ".")), key=len, default=None)
    return None if best is None else ALLOWED[best]


@pytest.mark.parametrize("module,path", _modules(), ids=[m for m, _ in _modules()])
def test_imports_stay_in_their_layer(module, path):
    allowed = _rule(module)
    if allowed is None:  # the top: cli, bench, __main__, the package root
        return
    bad = []
    for target in _imports(path):
        if target in ("mtlib.TASKS", "mtlib.__version__"):
            continue
        if not any(target == a or target.startswith(a + ".") for a in allowed):
            bad.append(target)
    assert not bad, f"{module} imports {bad}, above its layer"
    if module.startswith(READ_ONLY):
        assert not any(t.startswith("mtlib.train.trainer") for t in _imports(path)), f"{module} imports the trainer"
