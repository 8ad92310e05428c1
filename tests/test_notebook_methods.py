"""Notebook 08 (more methods, beyond the paper) follows the notebook conventions and runs under papermill on
smoke: every row trained, the methods table, the overview figure and the exposure-vs-surgery sentence."""

from __future__ import annotations

import json


from mtlib.notebook.runs import rows_for

NAME = "08_more_methods"


def test_conventions():
    from test_notebooks_training import test_conventions as conventions

    conventions(NAME)


def test_listed_by_the_workbook():
    from mtlib.runs.workbook import list_notebooks

    assert NAME in [nb.stem for nb in list_notebooks()]


def test_runs_under_papermill(tmp_path, small_data_dir):
    from test_notebooks_training import run_on_smoke

    finished, figures, nb = run_on_smoke(NAME, tmp_path, small_data_dir)
    assert {r["id"] for r in rows_for(NAME)} | {"pcgrad", "gradvac"} <= finished
    assert (figures / "08_methods_overview.png").is_file() and any(figures.glob("08_conflicts_*.png"))
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "ablation panel skipped" in text
    shown = json.dumps([o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs])
    assert "Exposure or surgery?" in shown and "inconclusive (one seed: no interval)" in shown  # smoke: one seed
    assert "combine_share" in shown and "upgrad" in shown
