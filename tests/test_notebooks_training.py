"""Notebooks 02-06 run end to end under papermill on the smoke profile, and hold no logic."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest

from mtlib.config.run_config import REPO_ROOT
from mtlib.notebook.runs import rows_for

NOTEBOOKS = ["02_baselines", "03_gradient_methods", "04_heads", "05_pals", "06_gradient_compromise"]
LOGIC = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.For,
    ast.While,
    ast.If,
    ast.Try,
    ast.With,
    ast.ListComp,
    ast.GeneratorExp,
    ast.DictComp,
    ast.Lambda,
)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_conventions(name):
    nb = nbformat.read(REPO_ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"
    assert all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.parse(code[0].source).body)
    assert "parameters" in code[1].metadata.get("tags", [])
    names = {n.targets[0].id for n in ast.parse(code[1].source).body if isinstance(n, ast.Assign)}
    assert {"profile", "seeds", "out_dir", "figures_dir", "progress", "rows", "overrides", "show_widgets"} <= names
    for cell in code:
        assert not any(isinstance(n, LOGIC) for n in ast.walk(ast.parse(cell.source))), cell.source
    assert any("ablation_panel" in c.source for c in code)


def run_on_smoke(name: str, tmp_path: Path, data_dir) -> tuple[set, Path, nbformat.NotebookNode]:
    """Run notebook ``name`` under papermill on smoke (32 training examples per task): the names of the runs
    it finished, its figures folder and the executed notebook."""
    import papermill as pm

    out_dir, figures = tmp_path / "runs", tmp_path / "figures"
    target = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(
        str(REPO_ROOT / "notebooks" / f"{name}.ipynb"),
        str(target),
        kernel_name="python3",
        progress_bar=False,
        cwd=str(REPO_ROOT),
        parameters={
            "profile": "smoke",
            "out_dir": str(out_dir),
            "figures_dir": str(figures),
            "progress": False,
            "overrides": {"data_dir": str(data_dir), "max_train_examples": 32},
        },
    )
    finished = {json.loads(p.read_text())["name"] for p in out_dir.glob("*/seed*/metrics.json")}
    return finished, figures, nbformat.read(target, as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_under_papermill(name, tmp_path, small_data_dir):
    finished, figures, nb = run_on_smoke(name, tmp_path, small_data_dir)
    assert {r["id"] for r in rows_for(name)} <= finished  # every row of the notebook was trained
    assert any(figures.glob(f"{name[:2]}_*.png"))
    assert (figures / f"{name[:2]}_dev_predictions.png").is_file()  # confusion matrices and STS scatter
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "ablation panel skipped" in text  # the widget panel is not built under papermill
    tables = [
        o["data"]["text/html"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "text/html" in o.get("data", {})
    ]
    assert any("paper" in t for t in tables)  # our numbers beside the paper's
