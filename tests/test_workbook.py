"""`make workbook` in a terminal: a line per run as it starts, after each epoch and as it ends, no kernel
noise, and a summary table (mtlib.runs.workbook, mtlib.runs.events)."""

import json
import tempfile

import nbformat
import pytest

from mtlib.notebook import runs
from mtlib.runs.events import PROGRESS_ENV
from mtlib.runs.workbook import RunLines, run_workbook


def test_run_lines_say_where_a_run_is_and_what_is_left(capsys, monkeypatch):
    clock = iter([0.0, 30.0, 90.0, 90.0, 100.0, 100.0])
    monkeypatch.setattr("mtlib.runs.workbook.time.time", lambda: next(clock))
    lines = RunLines("02_baselines", planned=2)
    run = {"name": "base", "seed": 1, "epochs_total": 4}
    lines({"kind": "started", "key": "base seed1", **run, "pid": 7})
    lines(
        {
            "kind": "evaluated",
            "key": "base seed1",
            **run,
            "phase": "finetune",
            "epoch": 1,
            "epochs_done": 1,
            "mean": 0.4123,
        }
    )
    lines({"kind": "finished", "key": "base seed1", **run, "run_dir": "x", "mean": 0.5})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[workbook] 02_baselines base seed 1: run 1 of 2 started"
    assert "finetune epoch 1 (1/4), dev mean 0.412, 0:30 elapsed, ~1:30 left in this run" in out[1]
    assert out[2].startswith("[workbook] 02_baselines base seed 1: done, dev mean 0.500, 1:30")
    assert "~1:30 left in the notebook" in out[2]  # one more run planned, as long as this one
    lines({"kind": "found", "key": "pcgrad seed1", "name": "pcgrad", "seed": 1, "epochs_total": 4, "mean": 0.61})
    lines({"kind": "failed", "key": "gradvac seed1", "name": "gradvac", "seed": 1, "epochs_total": 4, "error": "E: x"})
    assert capsys.readouterr().out.splitlines() == [
        "[workbook] 02_baselines pcgrad seed 1: run 2 of 2 already finished, dev mean 0.610",
        "[workbook] 02_baselines gradvac seed 1: failed after 0:00: E: x",
    ]


def test_a_notebooks_runs_write_their_events_to_the_progress_file(tmp_path, monkeypatch, small_data_dir):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(events))
    kw = {"out_dir": str(tmp_path / "runs"), "data_dir": str(small_data_dir)}
    (first,) = runs.run_ids(["base"], "smoke", **kw)
    (again,) = runs.run_ids(["base"], "smoke", **kw)  # finished: found, not trained again
    got = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["kind"] for e in got] == ["started", "evaluated", "evaluated", "finished", "found"]
    assert again == first and got[3]["run_dir"] == got[4]["run_dir"] == str(first)
    assert got[4]["mean"] == got[3]["mean"] and isinstance(got[3]["mean"], float)
    assert got[2]["epochs_done"] == got[2]["epochs_total"] == 2 and got[0]["name"] == "base"


def _notebook(path, params: str, *cells: str) -> None:
    params = nbformat.v4.new_code_cell(f'profile = "quick"\nout_dir = "x"\noverrides = {{}}\n{params}')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, *map(nbformat.v4.new_code_cell, cells)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.slow
def test_workbook_prints_runs_and_a_summary_without_kernel_noise(tmp_path, capfd, small_data_dir, monkeypatch):
    """02 declares base (the pre-run trains it) and also asks for gradvac by id (it trains in the notebook);
    04's declared run fails in the pre-run and again in its notebook, which reports it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the failed pre-run's worker logs stay here
    monkeypatch.setenv("MTLIB_DATA_DIR", str(small_data_dir))  # the kernels' default data folder
    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(
        folder / "02_baselines.ipynb",
        'rows = ["base"]',
        "%matplotlib inline\nfrom mtlib.notebook import runs",
        'runs.run_rows("02_baselines", profile, only=rows, out_dir=out_dir, **overrides)',
        "runs.run_ids(['gradvac'], profile, out_dir=out_dir, **overrides)",
    )
    _notebook(
        folder / "04_heads.ipynb",
        'rows = ["rnn128"]\noverrides = {"init_checkpoint": "/nonexistent/best.pt"}',
        "from mtlib.notebook import runs",
        'runs.run_rows("04_heads", profile, only=rows, out_dir=out_dir, **overrides)',
    )
    code = run_workbook(
        "smoke", out_dir=tmp_path / "out", folder=folder, workers="2", parameters={"out_dir": str(tmp_path / "runs")}
    )
    out, err = capfd.readouterr()
    assert code == 1, out + err
    assert (
        "[workbook] pre-run: 2 training run(s) of these notebooks on 2 worker process(es) x 1 thread(s) (--workers; "
    ) in out
    assert "[workbook] pre-run base seed 11711: run " in out and " of 2 started" in out
    assert "epoch 2 (2/2), dev mean" in out
    assert "[workbook] pre-run base seed 11711: done, dev mean" in out
    assert "[workbook] pre-run: rnn128 seed11711 failed: " in out and "init_checkpoint" in out
    assert "[workbook] pre-run: 1 of 2 run(s) finished in " in out
    assert "[workbook] 02_baselines base seed 11711: run 1 of 7 already finished, dev mean" in out  # not again
    assert "[workbook] 02_baselines gradvac seed 11711: done, dev mean" in out  # trained in the notebook
    assert "[workbook] FAILED 04_heads.ipynb: RunsFailed: rnn128 seed11711: FileNotFoundError: config: key" in out
    summary = out[out.index("[workbook] summary") :].splitlines()
    assert summary[2].split()[:7] == ["pre-run", "(2", "workers", "x", "1", "thr)", "1"]  # + "fail", runs, time
    assert summary[3].split()[:3] == ["02_baselines", "ok", "2"] and summary[4].split()[:2] == ["04_heads", "FAILED"]
    assert "1 passed, 1 failed" in summary[5]
    assert "without encryption" not in out + err


def test_a_bad_workers_value_stops_the_workbook_before_anything_runs(tmp_path, capsys):
    from mtlib.cli import main

    assert main(["workbook", "--profile", "smoke", "--workers", "-1", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines()[0] == (
        "error: workers: got '-1'; expected a whole number of worker processes, 1 or more"
    )
    assert not list(tmp_path.iterdir())


def test_a_profile_other_than_quick_writes_its_own_figures_and_results():
    from mtlib.runs.workbook import profile_outputs

    assert profile_outputs("quick", "07_results") == {
        "figures_dir": "outputs/figures",
        "results_md": "outputs/results.md",
    }
    assert profile_outputs("smoke", "07_results") == {
        "figures_dir": "outputs/smoke/figures",
        "results_md": "outputs/smoke/results.md",
    }
    assert profile_outputs("params/profiles/gpu.yaml", "02_baselines") == {"figures_dir": "outputs/gpu/figures"}
