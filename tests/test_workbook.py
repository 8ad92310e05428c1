"""`make workbook` in a terminal: a line per run as it starts, after each epoch and as it ends, no kernel
noise, and a summary table (mtlib.study.workbook, mtlib.study.progress)."""

import json

import nbformat
import pytest

from mtlib.study import progress
from mtlib.study.resolve import resolve_config
from mtlib.study.workbook import RunLines, run_workbook


def test_run_lines_say_where_a_run_is_and_what_is_left(capsys):
    lines = RunLines("02_baselines", planned=2)
    lines({"event": "start", "name": "base", "seed": 1, "epochs_total": 4, "t": 0.0})
    lines({"event": "epoch", "name": "base", "seed": 1, "epochs_total": 4, "phase": "finetune", "epoch": 1,
           "epochs_done": 1, "mean": 0.4123})
    lines({"event": "end", "name": "base", "seed": 1, "epochs_total": 4, "status": "done", "mean": 0.5,
           "seconds": 90.0})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[workbook] 02_baselines base seed 1: run 1 of 2 started"
    assert "finetune epoch 1 (1/4), dev mean 0.412" in out[1] and "elapsed" in out[1] and "left in this run" in out[1]
    assert out[2].startswith("[workbook] 02_baselines base seed 1: done, dev mean 0.500, 1:30")
    assert "~1:30 left in the notebook" in out[2]  # one more run planned, as long as this one


def test_run_reported_writes_start_epochs_and_end(tmp_path, monkeypatch, small_data_dir):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(progress.ENV, str(events))
    cfg = resolve_config("smoke", row="base", out_dir=str(tmp_path / "runs"), data_dir=str(small_data_dir))
    progress.run_reported(cfg)
    progress.run_reported(cfg)  # finished: reported as such, not trained again
    got = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["event"] for e in got] == ["start", "epoch", "epoch", "end", "start", "end"]
    assert got[3]["status"] == "done" and got[5]["status"] == "already finished"
    assert got[2]["epochs_done"] == got[2]["epochs_total"] == 2 and isinstance(got[3]["mean"], float)


@pytest.mark.slow
def test_workbook_prints_runs_and_a_summary_without_kernel_noise(tmp_path, capfd, small_data_dir):
    folder = tmp_path / "nbs"
    folder.mkdir()
    params = nbformat.v4.new_code_cell('profile = "quick"\nout_dir = "x"\ndata_dir = None')
    params.metadata["tags"] = ["parameters"]
    train = nbformat.v4.new_code_cell("from mtlib.study import runs\n"
                                      "runs.run_ids(['base'], profile, out_dir=out_dir, data_dir=data_dir)")
    nb = nbformat.v4.new_notebook(cells=[params, train])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "01_tiny.ipynb")
    code = run_workbook("smoke", out_dir=tmp_path / "out", folder=folder,
                        parameters={"out_dir": str(tmp_path / "runs"), "data_dir": str(small_data_dir)})
    out, err = capfd.readouterr()
    assert code == 0, out + err
    assert "[workbook] 01_tiny base seed 11711: run 1 started" in out
    assert "finetune epoch 2 (2/2), dev mean" in out or "epoch 2 (2/2), dev mean" in out
    assert "[workbook] 01_tiny base seed 11711: done, dev mean" in out
    summary = out[out.index("[workbook] summary"):]
    assert "01_tiny" in summary and " ok " in summary and "1 passed, 0 failed" in summary
    assert "without encryption" not in out + err
