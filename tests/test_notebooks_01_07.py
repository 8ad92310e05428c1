"""Notebooks 01 and 07: workbook conventions, and papermill runs under the smoke profile."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from mtlib import data
from mtlib.config.run_config import REPO_ROOT
from mtlib.experiments.claims_file import load_claims
from mtlib.experiments.resolve import resolve_config

NOTEBOOKS = REPO_ROOT / "notebooks"
NB01 = NOTEBOOKS / "01_data_exploration.ipynb"
NB07 = NOTEBOOKS / "07_results.ipynb"
LOGIC = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.While, ast.If, ast.Try, ast.With)


def _has_data() -> bool:
    return any(
        (root / "ids-sst-train.csv").is_file() and (root / "quora-train-subset-head.csv").is_file()
        for root in (data.default_data_dir(), data.SHARED_MIRROR)
    )


@pytest.mark.parametrize("path", [NB01, NB07], ids=lambda p: p.stem)
def test_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"
    first, params = code[0], code[1]
    assert all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in ast.parse(first.source).body)
    assert "parameters" in params.metadata.get("tags", [])
    names = {node.targets[0].id for node in ast.parse(params.source).body if isinstance(node, ast.Assign)}
    assert {"profile", "out_dir", "figures_dir", "progress"} <= names
    assert 'profile = "quick"' in params.source
    for cell in code:  # no logic in notebooks: calls into mtlib and display only
        assert not any(isinstance(node, LOGIC) for node in ast.walk(ast.parse(cell.source))), cell.source
    assert any(c.cell_type == "markdown" and "paper" in c.source for c in nb.cells)  # explained for the reader


def _execute(path: Path, target: Path, **parameters) -> nbformat.NotebookNode:
    import papermill as pm

    pm.execute_notebook(
        str(path),
        str(target),
        parameters={"profile": "smoke", **parameters},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(REPO_ROOT),
    )
    return nbformat.read(target, as_version=4)


@pytest.mark.skipif(not _has_data(), reason="course data not fetched (python -m mtlib data fetch)")
def test_01_data_exploration_runs(tmp_path):
    figures = tmp_path / "figures"
    nb = _execute(NB01, tmp_path / "01.ipynb", figures_dir=str(figures))
    assert sorted(p.name for p in figures.glob("*.png")) == [
        "01_class_distributions.png",
        "01_length_distributions.png",
        "01_quora_availability.png",
    ]
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert images == 3  # each figure shown once


def test_07_results_without_runs(tmp_path):
    md = tmp_path / "results.md"
    _execute(
        NB07,
        tmp_path / "07.ipynb",
        out_dir=str(tmp_path / "runs"),
        figures_dir=str(tmp_path / "figures"),
        results_md=str(md),
    )
    text = md.read_text()
    assert "No finished runs" in text and "0.741" in text  # the paper's numbers are still there
    assert "## The paper's claims" in text and f"0 holds, 0 fails, {len(load_claims())} inconclusive" in text
    assert (
        "| Sentence concatenation beats concatenated embeddings | directional | base > concat_embed | dev mean | 0 |"
        in text
    )
    for name in ("07_results_bars", "07_claims_forest", "07_dev_predictions"):
        assert (tmp_path / "figures" / f"{name}.png").is_file()


def test_07_results_after_a_smoke_run(tmp_path, small_data_dir):
    from mtlib.train.trainer import run

    out = tmp_path / "runs"
    run(resolve_config("smoke", row="base_pal", out_dir=str(out), data_dir=str(small_data_dir)))
    md = tmp_path / "results.md"
    nb = _execute(
        NB07, tmp_path / "07.ipynb", out_dir=str(out), figures_dir=str(tmp_path / "figures"), results_md=str(md)
    )
    line = next(line for line in md.read_text().splitlines() if line.startswith("| base_pal "))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "1" and all(c != "\u2014" for c in cells[3:8])  # one seed, our five scores present
    assert "tiny-random" in md.read_text() and "1 finished run(s) of 1 row(s)" in md.read_text()
    shown = "".join(
        o.get("data", {}).get("text/markdown", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "tiny-random" in shown  # provenance displayed under the table
    claims_line = next(line for line in md.read_text().splitlines() if line.startswith("| pal_schedule "))
    assert "| 0 |" in claims_line and "inconclusive" in claims_line  # base_pal alone: nothing to pair with
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code" and "prediction_panels" in c.source
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert len(images) == 1  # base_pal's confusion matrices and STS scatter, from its dev predictions
