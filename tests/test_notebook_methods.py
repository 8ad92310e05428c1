"""Notebook 08 (more methods, beyond the paper) follows the notebook conventions and runs under papermill on
smoke: every row trained, the methods table, the overview figure and the exposure-vs-surgery sentence."""

from __future__ import annotations

import json

import nbformat
import pytest

from mtlib.config import REPO_ROOT
from mtlib.study.runs import rows_for

NAME = "08_more_methods"


def test_conventions():
    from test_notebooks_training import test_conventions as conventions

    conventions(NAME)


def test_listed_by_the_workbook():
    from mtlib.study.workbook import list_notebooks

    assert NAME in [nb.stem for nb in list_notebooks()]


def test_runs_under_papermill(tmp_path, small_data_dir):
    import papermill as pm

    out_dir, figures = tmp_path / "runs", tmp_path / "figures"
    target = tmp_path / f"{NAME}.ipynb"
    pm.execute_notebook(
        str(REPO_ROOT / "notebooks" / f"{NAME}.ipynb"), str(target), kernel_name="python3", progress_bar=False,
        cwd=str(REPO_ROOT),
        parameters={"profile": "smoke", "out_dir": str(out_dir), "figures_dir": str(figures), "progress": False,
                    "overrides": {"data_dir": str(small_data_dir), "max_train_examples": 32}},
    )
    finished = {json.loads(p.read_text())["name"] for p in out_dir.glob("*/seed*/metrics.json")}
    assert {r["id"] for r in rows_for(NAME)} | {"pcgrad", "gradvac"} <= finished
    assert (figures / "08_methods_overview.png").is_file() and any(figures.glob("08_conflicts_*.png"))
    nb = nbformat.read(target, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "ablation panel skipped" in text
    shown = json.dumps([o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs])
    assert "Exposure or surgery?" in shown and "inconclusive (one seed: no interval)" in shown  # smoke: one seed
    assert "combine_share" in shown and "upgrad" in shown
