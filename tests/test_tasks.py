"""Tasks as data (mtlib.tasks): the course's three declared once in params/tasks.yaml; a fourth task from a
small fixture and a two-task configuration train, evaluate, resume, predict and appear in results, plots and
the panel's views; a bad declaration is one line naming the file and key."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtlib import tasks
from mtlib.config.types import ConfigError
from mtlib.data import parse
from mtlib.results import plots, scores
from mtlib.experiments.resolve import resolve_config
from mtlib.notebook.widgets.render import dev_curve_png, results_html
from mtlib.train.rescore import predict_run
from mtlib.train.trainer import run

FIXTURE = Path(__file__).parent / "fixtures" / "tasks"
TASK_FILE = FIXTURE / "polarity.yaml"


@pytest.fixture
def data_dir(small_data_dir, tmp_path) -> Path:
    """The small course data plus the polarity task's files."""
    out = tmp_path / "data"
    shutil.copytree(small_data_dir, out, symlinks=True)
    for f in FIXTURE.glob("*.csv"):
        shutil.copy(f, out / f.name)
    return out


def four(data_dir: Path, out: Path, **changes):
    return resolve_config(
        "smoke",
        out_dir=str(out / "runs"),
        data_dir=str(data_dir),
        max_train_examples=32,
        progress=False,
        threads=1,
        task_file=str(TASK_FILE),
        tasks=["sst", "para", "sts", "polarity"],
        batch_size={"sst": 8, "para": 8, "sts": 8, "polarity": 8},
        **changes,
    )


def test_the_course_tasks_are_declared_once():
    course = tasks.course()
    assert list(course) == ["sst", "para", "sts"]
    assert [t.kind for t in course.values()] == ["multiclass", "binary", "regression"]
    assert [t.out_dim for t in course.values()] == [5, 1, 1]
    assert course["sts"].label_range == (0.0, 5.0) and course["para"].train_subsets


def test_a_fourth_task_trains_evaluates_resumes_predicts_and_shows(data_dir, tmp_path):
    cfg = four(data_dir, tmp_path, epochs=2, batches_per_epoch=4)
    # killed after its first epoch (another process: the task file is registered there from the config)
    path = tmp_path / "cfg.yaml"
    path.write_text(cfg.to_yaml())
    code = (
        "import sys; from mtlib.experiments.resolve import resolve_config; from mtlib.train.trainer import run; "
        "run(resolve_config(sys.argv[1]))"
    )
    killed = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "MTLIB_FAULT": "epoch_end:1"},
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    run_dir = run(cfg)  # resumes
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resumed"] and set(metrics["dev"]) == {"sst", "para", "sts", "polarity", "mean"}
    assert 0.0 <= metrics["dev"]["polarity"] <= 1.0
    assert metrics["data"]["polarity"]["train_used"] == 32
    header = (run_dir / "predictions" / "polarity-dev-output.csv").read_text().splitlines()[0]
    assert header == "id \t Predicted_Positive "
    # the same run alone, uninterrupted: the resume changed nothing
    whole = run(four(data_dir, tmp_path / "whole", epochs=2, batches_per_epoch=4))
    assert json.loads((whole / "metrics.json").read_text())["dev"] == metrics["dev"]
    # predict gives back its scores
    assert predict_run(run_dir, out_dir=tmp_path / "again")["scores"] == metrics["dev"]
    # results, plots and the panel's views
    rows = [{"id": cfg.name, "label": "four tasks", "notebook": "none", "paper": {}, "config": {}}]
    table = scores.results_table(tmp_path / "runs", experiments=rows)
    assert "polarity" in table.columns and table.loc[0, "polarity"] == metrics["dev"]["polarity"]
    assert "Polarity" in scores.to_markdown(table, scores.provenance(table))
    fig = plots.prediction_panels([run_dir])
    assert len(fig.axes) == 4 and "Polarity" in fig.axes[3].get_title()
    assert dev_curve_png(
        json.loads("[" + ",".join((run_dir / "history.jsonl").read_text().split("\n")[:-1]) + "]"), cfg.name
    )
    assert "Polarity acc." in results_html(metrics, None)
    # the task's declaration is part of the run id; the course tasks' runs keep theirs
    identity = json.loads((run_dir / "identity.json").read_text())
    assert set(identity["inputs"]["tasks"]) == {"polarity"}


def test_a_two_task_configuration(data_dir, tmp_path):
    cfg = resolve_config(
        "smoke",
        out_dir=str(tmp_path / "runs"),
        data_dir=str(data_dir),
        max_train_examples=32,
        progress=False,
        threads=1,
        tasks=["sst", "sts"],
        batch_size={"sst": 8, "sts": 8},
        epochs=1,
        batches_per_epoch=4,
    )
    run_dir = run(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    dev = metrics["dev"]
    assert set(dev) == {"sst", "sts", "mean"} and dev["mean"] == pytest.approx((dev["sst"] + dev["sts"]) / 2)
    assert sorted(p.name for p in (run_dir / "predictions").iterdir())[:2] == [
        "sst-dev-output.csv",
        "sts-dev-output.csv",
    ]
    assert predict_run(run_dir, out_dir=tmp_path / "again")["scores"] == dev
    rows = [{"id": cfg.name, "label": "two tasks", "notebook": "none", "paper": {}, "config": {}}]
    table = scores.results_table(tmp_path / "runs", experiments=rows)
    assert table.loc[0, "mean"] == pytest.approx(metrics["dev_full"]["mean"])  # beside the paper: all of dev
    assert len(plots.prediction_panels([run_dir]).axes) == 2


@pytest.mark.parametrize(
    "change,message",
    [
        ({"kind": "ordinal"}, "key 'kind' has value 'ordinal'; expected multiclass or binary or regression"),
        ({"labels": [0, 2]}, "key 'labels' has value [0, 2]; expected [0, 1] for a binary task"),
        ({"metric": "pearson"}, "key 'metric' has value 'pearson'; expected accuracy for a classification task"),
        (
            {"text_columns": ["a", "b"]},
            "key 'text_columns' has value ['a', 'b']; expected 1 column(s) for input 'single'",
        ),
        ({"colour": None, "loss": "hinge"}, "unknown key 'loss'"),
    ],
)
def test_a_bad_declaration_is_one_line_naming_the_file_and_key(change, message, tmp_path):
    spec = yaml.safe_load(TASK_FILE.read_text())["polarity"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"polarity2": {**spec, **change}}))
    with pytest.raises(tasks.TaskError, match=r"^" + str(path).replace(".", r"\.") + r": task 'polarity2' ") as err:
        tasks.read_task_file(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_config_with_a_bad_task_file_names_the_key(smoke_cfg, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("polarity3: {kind: binary}\n")
    with pytest.raises(ConfigError, match=r"key 'task_file': .*bad.yaml: task 'polarity3' is missing the key"):
        smoke_cfg.replace(task_file=str(path))


def test_labels_outside_the_declared_space_and_missing_columns_name_the_file(data_dir):
    tasks.register(TASK_FILE)
    dev = data_dir / "polarity-dev.csv"
    lines = dev.read_text().splitlines()
    dev.write_text("\n".join([*lines[:3], lines[3].rsplit("\t", 1)[0] + "\t3", *lines[4:]]) + "\n")
    with pytest.raises(ValueError, match=rf"{dev} line 4: positive '3' is not 0 or 1"):
        parse.load_split("polarity", "dev", data_dir)
    dev.write_text("id\tsentence\tpositive\n" + "\n".join(lines[1:]) + "\n")
    with pytest.raises(ValueError, match=rf"{dev} line 1: header has columns .* expected columns \['id', 'text'"):
        parse.load_split("polarity", "dev", data_dir)


def test_a_task_name_may_not_be_declared_twice_differently(tmp_path):
    spec = yaml.safe_load(TASK_FILE.read_text())["polarity"]
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump({"sst": {**spec}}))
    with pytest.raises(tasks.TaskError, match="task 'sst' is already declared differently in .*params/tasks.yaml"):
        tasks.register(path)


def test_course_runs_carry_no_task_declarations_in_their_identity(smoke_cfg):
    from mtlib.train.identity import run_identity

    assert "inputs" not in run_identity(smoke_cfg)  # so their run ids are the ones they had
