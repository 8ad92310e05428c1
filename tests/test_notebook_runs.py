"""mtlib.runs.notebook_runs: the runs a notebook will ask for, read from its code (the workbook's pre-run)."""

from __future__ import annotations

import nbformat

from mtlib.experiments.rows import load_experiments
from mtlib.runs.notebook_runs import notebook_runs
from mtlib.experiments.resolve import resolve_config
from mtlib.runs.workbook import list_notebooks


def _notebook(path, *cells: str):
    params = nbformat.v4.new_code_cell('profile = "quick"\nseeds = None\nout_dir = "x"\noverrides = {}')
    params.metadata["tags"] = ["parameters"]
    nbformat.write(nbformat.v4.new_notebook(cells=[params, *map(nbformat.v4.new_code_cell, cells)]), path)
    return path


def test_calls_are_read_with_the_notebooks_parameters_and_merged(tmp_path, small_data_dir):
    nb = _notebook(
        tmp_path / "02_x.ipynb",
        "%matplotlib inline\nfrom mtlib.study import runs",
        "run_dirs = runs.run_rows('02_baselines', profile, seeds=seeds, only=['base', 'advanced'], "
        "out_dir=out_dir, **overrides)",
        "run_dirs += runs.run_ids(['advanced_pal_finetune', 'base'], profile, seeds, out_dir=out_dir, **overrides)",
        # base again with other settings: a run of its own
        "runs.run_ids(['base'], profile, seeds=seeds, out_dir=out_dir, epochs=1, **overrides)",
        "runs.run_ids(['gradvac'], profile, out_dir=out_dir + '/b')",  # an expression: not read
        "runs.run_ids(['pcgrad'], profile, engine='ray')",  # another engine: not here
        "runs.run_ids(['nonesuch'], profile)",
    )  # no such row: the notebook reports it
    overrides = {"data_dir": str(small_data_dir), "max_train_examples": 32}
    runs = notebook_runs([nb], "smoke", {"out_dir": str(tmp_path / "runs"), "seeds": [3], "overrides": overrides})
    assert [r.key for r in runs] == ["base seed3", "advanced seed3", "advanced_pal_finetune seed3", "base seed3'"]
    assert runs[2].parents == ["advanced seed3"] and runs[3].parents == []
    for r, more in zip(runs, [{}, {}, {}, {"epochs": 1}]):
        row = r.key.split()[0]
        expected = resolve_config(
            "smoke", row=row, seed=3, out_dir=str(tmp_path / "runs"), progress=False, **overrides, **more
        )
        assert r.cfg == expected  # the config the notebook resolves: the same run directory


def test_the_workbook_notebooks_ask_for_every_row_once_parents_first(small_data_dir):
    runs = notebook_runs(list_notebooks(), "smoke", {"overrides": {"data_dir": str(small_data_dir)}})
    keys = [r.key for r in runs]
    assert sorted(keys) == sorted(f"{r['id']} seed11711" for r in load_experiments())
    assert keys.index("advanced seed11711") < keys.index("advanced_pal_finetune seed11711")
    assert all(r.cfg.out_dir == "outputs/runs" for r in runs)


def test_a_notebook_without_runs_or_parameters_cell_plans_nothing(tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("print(1)"), nbformat.v4.new_code_cell("this is not python (")]
    )
    nbformat.write(nb, tmp_path / "01_a.ipynb")
    assert notebook_runs([tmp_path / "01_a.ipynb"], "smoke") == []
