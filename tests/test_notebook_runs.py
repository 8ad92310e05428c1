"""mtlib.runs.notebook_runs: the runs a notebook declares (its rows and comparators in params/experiments.yaml,
with its parameters), which the workbook's pre-run trains; nothing is read from the notebook's code."""

from __future__ import annotations

import json

import nbformat
import pytest
import yaml

from mtlib.config.types import ConfigError
from mtlib.experiments.resolve import resolve_config
from mtlib.experiments.rows import EXPERIMENTS, comparators_for, load_experiments, rows_for
from mtlib.runs.notebook_runs import notebook_runs
from mtlib.runs.workbook import list_notebooks


def _notebook(path, params: str, *cells: str):
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nbformat.write(nbformat.v4.new_notebook(cells=[cell, *map(nbformat.v4.new_code_cell, cells)]), path)
    return path


def test_a_notebook_plans_its_rows_and_declared_comparators_with_its_parameters(tmp_path, small_data_dir):
    overrides = {"data_dir": str(small_data_dir), "max_train_examples": 32}
    params = f'profile = "quick"\nseeds = None\nout_dir = "x"\nrows = None\noverrides = {overrides!r}'
    nb06 = _notebook(tmp_path / "06_gradient_compromise.ipynb", params, "anything at all (")
    more = {**overrides, "epochs": 1}  # 08's own default: its runs have other settings
    nb08 = _notebook(tmp_path / "08_more_methods.ipynb", params.replace(repr(overrides), repr(more)))
    given = {"out_dir": str(tmp_path / "runs"), "seeds": [3]}
    runs = notebook_runs([nb06, nb08], "smoke", given)
    keys = [r.key for r in runs]
    own06 = [f"{r['id']} seed3" for r in rows_for("06_gradient_compromise")]
    assert keys[: len(own06)] == own06
    assert keys[len(own06) : len(own06) + 2] == ["base_pal_h1 seed3", "gradvac seed3"]  # its comparators
    assert {"pcgrad seed3", "gradvac seed3'"} <= set(keys[len(own06) + 2 :])  # 08's gradvac: a run of its own
    for r in runs:
        extra = {"epochs": 1} if r.key not in keys[: len(own06) + 2] else {}
        expected = resolve_config(
            "smoke", row=r.key.split()[0], seed=3, out_dir=str(tmp_path / "runs"), progress=False, **overrides, **extra
        )
        assert r.cfg == expected  # the config the notebook resolves: the same run directory
    # the workbook's overrides replace a notebook's default, as papermill injects them
    runs = notebook_runs([nb08], "smoke", {**given, "overrides": overrides})
    assert all(r.cfg.epochs != 1 for r in runs)


def test_rows_narrows_a_notebooks_own_rows_not_its_comparators(tmp_path, small_data_dir):
    nb = _notebook(tmp_path / "08_more_methods.ipynb", 'profile = "quick"\nrows = None\nout_dir = "x"')
    first = rows_for("08_more_methods")[0]["id"]
    runs = notebook_runs([nb], "smoke", {"rows": [first], "overrides": {"data_dir": str(small_data_dir)}})
    assert {r.key.split()[0] for r in runs} >= {first, "pcgrad", "gradvac"}
    assert not {r["id"] for r in rows_for("08_more_methods")[1:]} & {r.key.split()[0] for r in runs}


def test_the_workbook_notebooks_ask_for_every_row_once_parents_first(small_data_dir):
    runs = notebook_runs(list_notebooks(), "smoke", {"overrides": {"data_dir": str(small_data_dir)}})
    keys = [r.key for r in runs]
    assert sorted(keys) == sorted(f"{r['id']} seed11711" for r in load_experiments())
    assert keys.index("advanced seed11711") < keys.index("advanced_pal_finetune seed11711")
    assert all(r.cfg.out_dir == "outputs/runs" for r in runs)


@pytest.mark.parametrize("notebook", [nb.stem for nb in list_notebooks()])
def test_each_workbook_notebook_trains_what_it_declares(notebook):
    """The declaration is what the notebook does: its own rows through run_rows and its comparators through
    run_comparators, each with the parameters the pre-run plans with; no other training call."""
    path = next(nb for nb in list_notebooks() if nb.stem == notebook)
    code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    common = "profile, seeds=seeds, out_dir=out_dir, progress=progress, **overrides)"
    own = (
        f'runs.run_rows("{notebook}", profile, seeds=seeds, only=rows, out_dir=out_dir, progress=progress, **overrides)'
    )
    assert (own in code) == bool(rows_for(notebook))
    assert (f'runs.run_comparators("{notebook}", {common}' in code) == bool(comparators_for(notebook))
    assert "run_ids(" not in code and code.count("runs.run_") == bool(rows_for(notebook)) + bool(
        comparators_for(notebook)
    )


def test_a_notebook_without_declared_rows_or_parameters_cell_plans_nothing(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    nbformat.write(nb, tmp_path / "01_a.ipynb")
    assert notebook_runs([tmp_path / "01_a.ipynb"], "smoke") == []


@pytest.mark.parametrize(
    "notebooks,message",
    [
        ({"06_x": {"comparators": ["nonesuch"]}}, "notebooks.06_x.comparators names 'nonesuch', which is no row"),
        ({"06_x": {"comparators": "base"}}, "notebooks.06_x.comparators must be a list of row ids"),
        ({"06_x": {"others": ["base"]}}, "notebooks.06_x must be a mapping with the key 'comparators'"),
        (["base"], "notebooks must be a mapping"),
    ],
)
def test_a_bad_declaration_is_one_line_naming_the_file_and_key(tmp_path, notebooks, message):
    data = yaml.safe_load(EXPERIMENTS.read_text())
    data["notebooks"] = notebooks
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=f"{path}: .*{message}"):
        load_experiments(path)
