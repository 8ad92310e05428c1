"""python -m mtlib: score, run, workbook argument handling and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtlib import data
from mtlib.cli import build_parser, main

SHARED = data.SHARED_MIRROR
REFERENCE = SHARED / "reference" / "seed-dev-predictions"
MINI = Path(__file__).parent / "fixtures" / "mini_data"


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="no shared reference predictions")
@pytest.mark.parametrize(
    "task,gold,expected",
    [
        ("sst", "ids-sst-dev.csv", "sst accuracy 0.5223"),
        ("para", "quora-dev.csv", "para accuracy 0.8821"),
        ("sts", "sts-dev.csv", "sts pearson 0.8753"),
    ],
)
def test_score_reference_predictions(capsys, task, gold, expected):
    assert main(["score", "--task", task, str(REFERENCE / f"{task}-dev-output.csv"), str(SHARED / gold)]) == 0
    assert capsys.readouterr().out.strip() == expected


def test_score_errors_exit_2(capsys, tmp_path):
    assert main(["score", "--task", "sst", str(tmp_path / "missing.csv"), str(MINI / "ids-sst-dev.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert main(["score", "--task", "nli", "a", "b"]) == 2  # an unknown task: one line naming the known ones
    assert "unknown task 'nli'; known tasks: sst, para, sts" in capsys.readouterr().err


def test_run_smoke_with_overrides(capsys, tmp_path, small_data_dir):
    out = tmp_path / "runs"
    code = main(
        [
            "run",
            "smoke",
            "--set",
            f"out_dir={out}",
            "--set",
            "epochs=1",
            "--set",
            f"data_dir={small_data_dir}",
            "--set",
            "max_train_examples=16",
            "--set",
            "batches_per_epoch=3",
            "--seed",
            "7",
        ]
    )
    assert code == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert run_dir.parent.parent == out and run_dir.name == "seed7"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["seed"] == 7 and metrics["backbone"] == "tiny-random"
    evals = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in evals if r["type"] == "eval"] == [1]


def test_run_bad_set_key_exits_2(capsys, tmp_path):
    assert main(["run", "smoke", "--set", "epoch=1", "--set", f"out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "'epoch'" in err and "allowed keys" in err and "epochs" in err
    assert not list(tmp_path.iterdir())  # nothing was started
    assert main(["run", "smoke", "--set", "epochs"]) == 2
    assert "key=value" in capsys.readouterr().err
    assert main(["run", "smoke", "--set", "sampler=foo", "--set", f"out_dir={tmp_path}"]) == 2
    assert "'pal_control'" in capsys.readouterr().err
    assert main(["run", "nonesuch"]) == 2
    assert "available" in capsys.readouterr().err
    assert main(["run", "smoke", "--row", "nonesuch"]) == 2
    assert "nonesuch" in capsys.readouterr().err


def test_parser_commands():
    parser = build_parser()
    args = parser.parse_args(["workbook", "--profile", "smoke", "--only", "01", "02", "--dry-run"])
    assert (args.profile, args.only, args.dry_run) == ("smoke", ["01", "02"], True)
    args = parser.parse_args(["data", "fetch", "--no-download"])
    assert args.no_download and args.mirror is None
    with pytest.raises(SystemExit):
        parser.parse_args([])


def test_workbook_dry_run(capsys, tmp_path):
    assert main(["workbook", "--profile", "smoke", "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "02_baselines.ipynb" in out
    assert main(["workbook", "--profile", "nonesuch", "--dry-run", "--out", str(tmp_path)]) == 2


def test_module_entry_point():
    # python -m mtlib exits with main()'s code
    proc = subprocess.run(
        [sys.executable, "-m", "mtlib", "run", "smoke", "--set", "nope=1"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "'nope'" in proc.stderr
