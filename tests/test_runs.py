"""mtlib.notebook.runs: the experiments table, configs per row, skip/resume of run_rows, the papermill driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtlib import rundir
from mtlib.results import tables
from mtlib.runs import workbook
from mtlib.config.run_config import RunConfig
from mtlib.experiments.rows import get_row, load_experiments, paper_rows
from mtlib.notebook.runs import run_rows
from mtlib.runs.workbook import run_workbook
from mtlib.experiments.resolve import resolve_config
from mtlib.train.identity import run_dir_for, run_id, run_identity

NOTEBOOKS = {"02_baselines", "03_gradient_methods", "04_heads", "05_pals", "06_gradient_compromise"}


def test_experiments_table():
    everything = load_experiments()
    rows = paper_rows(everything)
    assert len(rows) == 16
    assert len({r["id"] for r in everything}) == len(everything)
    assert {r["notebook"] for r in rows} == NOTEBOOKS
    beyond = [r for r in everything if r.get("beyond_paper")]
    assert {r["notebook"] for r in beyond} == {"08_more_methods"} and all(r["paper"] == {} for r in beyond)
    for r in rows:
        assert set(r["paper"]) == {"sst", "para", "sts", "mean"}
        assert r["paper"]["mean"] == pytest.approx(sum(r["paper"][t] for t in ("sst", "para", "sts")) / 3, abs=2e-3)
    ids = {r["id"] for r in rows}
    assert all(r["init_from"] in ids for r in rows if r.get("init_from"))
    assert get_row("advanced")["paper"]["mean"] == 0.758
    with pytest.raises(KeyError, match="nonesuch"):
        get_row("nonesuch")


def test_experiments_file_errors(tmp_path):
    bad = tmp_path / "e.yaml"
    bad.write_text("rows: {a: 1}\n")
    with pytest.raises(ValueError, match="'rows'"):
        load_experiments(bad)
    bad.write_text("rows:\n  - {id: a, label: x, notebook: n, paper: {}}\n")
    with pytest.raises(ValueError, match="'config'"):
        load_experiments(bad)
    row = "{id: a, label: x, notebook: n, paper: {}, config: {}}"
    bad.write_text(f"rows:\n  - {row}\n  - {row}\n")
    with pytest.raises(ValueError, match="repeats id 'a'"):
        load_experiments(bad)


@pytest.mark.parametrize("row", [r["id"] for r in load_experiments()])
def test_every_row_builds_a_valid_config(row, tmp_path):
    cfg = resolve_config("smoke", row=row, out_dir=str(tmp_path))
    assert isinstance(cfg, RunConfig)
    assert cfg.name == row and cfg.backbone == "tiny-random" and cfg.seed == 11711
    assert run_dir_for(cfg).parent.name == f"{row}-{run_id(run_identity(cfg))}"
    spec = get_row(row)
    for key, value in spec["config"].items():
        if key != "phases":
            assert getattr(cfg, key) == value, key
    phases = cfg.phase_configs()
    assert len(phases) == max(1, len(spec["config"].get("phases", [])))
    for phase, raw in zip(phases, spec["config"].get("phases", [])):
        if raw.get("name") in ("pretrain", "pal_only"):  # shortened by the smoke profile's phase_overrides
            assert (phase.epochs, phase.batches_per_epoch) == (1, 3)
        if raw.get("name") == "pretrain":
            assert phase.freeze == "encoder" and phase.lr == 1e-3 and phase.gradient_method == "none"
    assert resolve_config("smoke", row=row, seed=3, out_dir=str(tmp_path)).seed == 3


def test_init_from_resolves_to_the_parent_best(tmp_path):
    child = resolve_config("smoke", row="advanced_pal_finetune", out_dir=str(tmp_path), epochs=1)
    parent = resolve_config("smoke", row="advanced", out_dir=str(tmp_path), epochs=1)
    assert child.init_checkpoint == str(run_dir_for(parent) / "best.pt")
    assert child.pals and not parent.pals
    assert child.phases[0]["freeze"] == "all_but_pals"
    # the parent of the same seed
    assert resolve_config("smoke", row="advanced_pal_finetune", seed=5, out_dir=str(tmp_path)).init_checkpoint == str(
        run_dir_for(resolve_config("smoke", row="advanced", seed=5, out_dir=str(tmp_path))) / "best.pt"
    )
    # an explicit init_checkpoint wins
    assert resolve_config("smoke", row="advanced_pal_finetune", init_checkpoint="x.pt").init_checkpoint == "x.pt"
    assert resolve_config("smoke", row="base").init_checkpoint is None


def test_config_for_sources(tmp_path):
    # a dict, a plain run-config YAML, and overrides on top
    assert resolve_config({"backbone": "tiny-random", "epochs": 2}).epochs == 2
    path = tmp_path / "run.yaml"
    path.write_text("backbone: tiny-random\nepochs: 4\nlr: 1e-4\n")
    cfg = resolve_config(path, lr=5e-5)
    assert (cfg.epochs, cfg.lr) == (4, 5e-5)
    with pytest.raises(ValueError, match="'epoch'"):
        resolve_config("smoke", epoch=1)
    with pytest.raises(ValueError, match="available"):
        resolve_config("nonesuch")
    # a plain run-config YAML may extend a profile (the CLI reads it through the same resolver)
    path.write_text("extends: smoke\nepochs: 3\n")
    assert resolve_config(path).backbone == "tiny-random" and resolve_config(path) == resolve_config(path)


def test_run_rows_skips_finished_runs_and_trains_parents(tmp_path, small_data_dir):
    kw = dict(
        out_dir=str(tmp_path / "runs"),
        data_dir=str(small_data_dir),
        max_train_examples=16,
        epochs=1,
        batches_per_epoch=3,
    )
    (first,) = run_rows("02_baselines", "smoke", only=["base"], **kw)
    metrics = first / "metrics.json"
    stamp = metrics.stat().st_mtime_ns
    (again,) = run_rows("02_baselines", "smoke", only=["base"], **kw)
    assert again == first and metrics.stat().st_mtime_ns == stamp
    assert [r["type"] for r in rundir.read_history(first)].count("start") == 1
    assert json.loads(metrics.read_text())["name"] == "base"
    assert [Path(m["run_dir"]) for m in rundir.collect_metrics(tmp_path / "runs")] == [first]


def test_run_rows_trains_the_parent_of_an_init_from_row(tmp_path, small_data_dir, monkeypatch):
    # the child starts from its parent's best.pt even when the caller overrides result keys
    import mtlib.train.trainer as mtrain

    trained = []
    monkeypatch.setattr(mtrain, "run", lambda cfg, callback=None: trained.append(cfg) or run_dir_for(cfg))
    run_rows(
        "05_pals",
        "smoke",
        only=["advanced_pal_finetune"],
        out_dir=str(tmp_path),
        epochs=1,
        data_dir=str(small_data_dir),
    )
    parent, child = trained
    assert parent.name == "advanced" and child.name == "advanced_pal_finetune"
    assert child.init_checkpoint == str(run_dir_for(parent) / "best.pt")
    assert parent.epochs == child.epochs == 1


# ---------------------------------------------------------------- papermill
def _notebook(path: Path, body: str) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "x"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def test_run_workbook_reports_failures_and_goes_on(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "01_good.ipynb", 'print("profile is", profile)')
    _notebook(folder / "02_bad.ipynb", 'raise RuntimeError("boom in " + profile)')
    (folder / "notes.ipynb").write_text("not a numbered notebook: ignored")
    out = tmp_path / "out"
    assert run_workbook("smoke", out_dir=out, folder=folder) == 1
    report = capsys.readouterr().out
    assert "FAILED 02_bad.ipynb" in report and "RuntimeError: boom in smoke" in report
    assert "1 passed, 1 failed" in report
    good = out / "smoke" / "01_good.ipynb"
    assert good.is_file() and "profile is smoke" in good.read_text()
    assert (out / "smoke" / "02_bad.ipynb").is_file()  # the failing notebook is kept, with its traceback
    assert not (out / "smoke" / "notes.ipynb").exists()


def test_run_workbook_selection_and_dry_run(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "01_good.ipynb", "pass")
    _notebook(folder / "02_other.ipynb", "pass")
    assert [p.name for p in workbook.list_notebooks(["02"], folder)] == ["02_other.ipynb"]
    with pytest.raises(ValueError, match="09"):
        workbook.list_notebooks(["09"], folder)
    assert run_workbook("smoke", dry_run=True, out_dir=tmp_path / "out", folder=folder) == 0
    assert "01_good.ipynb" in capsys.readouterr().out
    assert not list((tmp_path / "out").rglob("*.ipynb"))
    with pytest.raises(ValueError, match="available"):
        run_workbook("nonesuch", out_dir=tmp_path / "out", folder=folder)


def test_list_notebooks_matches_by_prefix_in_folder_order(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("01_a", "02_b", "03_c"):
        (folder / f"{name}.ipynb").write_text("{}")
    assert [p.stem for p in workbook.list_notebooks(["03_c", "01"], folder)] == ["01_a", "03_c"]
    with pytest.raises(ValueError, match=r"\['9', '9'\]"):
        workbook.list_notebooks(["02", "9", "9"], folder)


def test_the_results_notebook_runs_after_every_training_notebook():
    # 07 writes outputs/results.md from the finished runs: 08's rows must have run by then
    stems = [p.stem for p in workbook.list_notebooks()]
    assert stems[-1] == workbook.RESULTS_NOTEBOOK and "08_more_methods" in stems
    assert stems[:-1] == sorted(stems[:-1])


def test_run_name_read_metrics_and_find_run(tmp_path):
    cfg = RunConfig(name="my-row", out_dir=str(tmp_path), seed=3)
    d = run_dir_for(cfg)
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(
        json.dumps({"name": "my-row", "data": {"sst": {"train_used": 7}, "quora_train": "x"}, "params": {"encoder": 5}})
    )
    assert rundir.run_name(d) == rundir.run_name(str(d)) == "my-row"
    assert rundir.read_metrics(d)["name"] == "my-row"
    assert tables.train_sizes(d) == {"sst": 7}
    assert tables.find_run([d], "my-row") == d
    assert tables.parameter_table([d]).loc["my-row", "encoder"] == 5
