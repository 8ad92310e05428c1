"""`make workbook` in a terminal: a line per run as it starts, after each epoch and as it ends, no kernel
noise, and a summary table (mtlib.runs.workbook, mtlib.runs.progress)."""

import json
import tempfile

import nbformat
import pytest

from mtlib.runs import progress
from mtlib.experiments.resolve import resolve_config
from mtlib.runs.workbook import RunLines, run_workbook


def test_run_lines_say_where_a_run_is_and_what_is_left(capsys):
    lines = RunLines("02_baselines", planned=2)
    lines({"event": "start", "name": "base", "seed": 1, "epochs_total": 4, "t": 0.0})
    lines(
        {
            "event": "epoch",
            "name": "base",
            "seed": 1,
            "epochs_total": 4,
            "phase": "finetune",
            "epoch": 1,
            "epochs_done": 1,
            "mean": 0.4123,
        }
    )
    lines(
        {"event": "end", "name": "base", "seed": 1, "epochs_total": 4, "status": "done", "mean": 0.5, "seconds": 90.0}
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[workbook] 02_baselines base seed 1: run 1 of 2 started"
    assert "finetune epoch 1 (1/4), dev mean 0.412" in out[1] and "elapsed" in out[1] and "left in this run" in out[1]
    assert out[2].startswith("[workbook] 02_baselines base seed 1: done, dev mean 0.500, 1:30")
    assert "~1:30 left in the notebook" in out[2]  # one more run planned, as long as this one
    lines({"event": "found", "name": "pcgrad", "seed": 1, "epochs_total": 4, "mean": 0.61})
    assert capsys.readouterr().out == (
        "[workbook] 02_baselines pcgrad seed 1: run 2 of 2 already finished, dev mean 0.610\n"
    )


def test_run_reported_writes_start_epochs_and_end(tmp_path, monkeypatch, small_data_dir):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(progress.ENV, str(events))
    cfg = resolve_config("smoke", row="base", out_dir=str(tmp_path / "runs"), data_dir=str(small_data_dir))
    progress.run_reported(cfg)
    progress.run_reported(cfg)  # finished: reported as such, not trained again
    got = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["event"] for e in got] == ["start", "epoch", "epoch", "end", "found"]  # finished: one line
    assert got[3]["status"] == "done" and got[4]["mean"] == got[3]["mean"]
    assert got[2]["epochs_done"] == got[2]["epochs_total"] == 2 and isinstance(got[3]["mean"], float)


def _notebook(path, *cells: str) -> None:
    params = nbformat.v4.new_code_cell('profile = "quick"\nout_dir = "x"\ndata_dir = None\noverrides = {}')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, *map(nbformat.v4.new_code_cell, cells)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.slow
def test_workbook_prints_runs_and_a_summary_without_kernel_noise(tmp_path, capfd, small_data_dir, monkeypatch):
    """01 asks for base (the pre-run trains it) and gradvac in a way the pre-run cannot read (it trains in the
    notebook, as before); 02's run fails in the pre-run and again in its notebook, which reports it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the failed pre-run's worker logs stay here
    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(
        folder / "01_tiny.ipynb",
        "%matplotlib inline\nfrom mtlib.study import runs",
        "runs.run_ids(['base'], profile, out_dir=out_dir, data_dir=data_dir)",
        "runs.run_ids(['gradvac'], profile, out_dir=out_dir + '', data_dir=data_dir)",
    )
    _notebook(
        folder / "02_bad.ipynb",
        "from mtlib.study import runs",
        "runs.run_rows('02_baselines', profile, only=['concat_embed'], out_dir=out_dir, data_dir=data_dir, "
        "init_checkpoint='/nonexistent/best.pt')",
    )
    code = run_workbook(
        "smoke",
        out_dir=tmp_path / "out",
        folder=folder,
        workers="2",
        parameters={"out_dir": str(tmp_path / "runs"), "data_dir": str(small_data_dir)},
    )
    out, err = capfd.readouterr()
    assert code == 1, out + err
    assert (
        "[workbook] pre-run: 2 training run(s) of these notebooks on 2 worker process(es) x 1 thread(s) (--workers; "
    ) in out
    assert "[workbook] pre-run base seed 11711: run " in out and " of 2 started" in out
    assert "epoch 2 (2/2), dev mean" in out
    assert "[workbook] pre-run base seed 11711: done, dev mean" in out
    assert "[workbook] pre-run: concat_embed seed11711 failed: " in out and "init_checkpoint" in out
    assert "[workbook] pre-run: 1 of 2 run(s) finished in " in out
    assert "[workbook] 01_tiny base seed 11711: run 1 already finished, dev mean" in out  # loaded, not trained again
    assert "[workbook] 01_tiny gradvac seed 11711: done, dev mean" in out  # trained in the notebook
    assert "[workbook] FAILED 02_bad.ipynb" in out
    summary = out[out.index("[workbook] summary") :].splitlines()
    assert summary[2].split()[:7] == ["pre-run", "(2", "workers", "x", "1", "thr)", "1"]  # + "fail", runs, time
    assert summary[3].split()[:3] == ["01_tiny", "ok", "2"] and summary[4].split()[:2] == ["02_bad", "FAILED"]
    assert "1 passed, 1 failed" in summary[5]
    assert "without encryption" not in out + err


def test_a_bad_workers_value_stops_the_workbook_before_anything_runs(tmp_path, capsys):
    from mtlib.cli import main

    assert main(["workbook", "--profile", "smoke", "--workers", "-1", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines()[0] == (
        "error: workers: got '-1'; expected a whole number of worker processes, 1 or more"
    )
    assert not list(tmp_path.iterdir())
