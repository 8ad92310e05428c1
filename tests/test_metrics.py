"""mtlib.data.metrics: metric properties, the course prediction-file format, scoring against course files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mtlib import TASKS, data
from mtlib import tasks
from mtlib.data.metrics import metric_name, accuracy, pearson, read_predictions, score, score_file, write_predictions

MINI = Path(__file__).parent / "fixtures" / "mini_data"
SHARED = data.SHARED_MIRROR  # ../shared/data beside the repo
REFERENCE = SHARED / "reference" / "seed-dev-predictions"


def test_accuracy_examples():
    assert accuracy([1, 0, 1, 1], [1, 0, 0, 1]) == 0.75
    assert accuracy(np.array([0.0, 1.0]), [0, 1]) == 1.0  # Quora predictions are floats, gold ints
    with pytest.raises(ValueError, match="3 predictions for 2"):
        accuracy([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="no predictions"):
        accuracy([], [])


def test_pearson_properties():
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, size=50)
    assert pearson(gold, gold) == pytest.approx(1.0)
    assert pearson(3 * gold + 7, gold) == pytest.approx(1.0)  # invariant to affine rescaling
    assert pearson(-gold, gold) == pytest.approx(-1.0)
    noisy = gold + rng.normal(size=50)
    assert pearson(noisy, gold) == pytest.approx(pearson(gold, noisy))  # symmetric
    assert pearson(noisy, gold) == pytest.approx(np.corrcoef(noisy, gold)[0, 1])
    assert pearson(np.ones(50), gold) == 0.0  # a constant prediction (a collapsed model) scores r = 0 exactly
    assert math.isnan(pearson(gold, np.ones(50)))  # constant gold: undefined


def test_score_dispatches_on_task():
    assert tuple(tasks.course()) == TASKS  # the config's default tasks are the declared course tasks
    assert [metric_name(t) for t in TASKS] == ["accuracy", "accuracy", "pearson"]
    assert score("sst", [1, 2], [1, 3]) == 0.5
    assert score("sts", [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sst, para, sts"):
        score("nli", [1], [1])


def test_write_predictions_course_format(tmp_path):
    path = write_predictions(tmp_path / "out" / "sst-dev-output.csv", "sst", ["a", "b"], np.array([4, 3]))
    assert path.read_bytes() == b"id \t Predicted_Sentiment \na , 4 \nb , 3 \n"
    write_predictions(tmp_path / "para.csv", "para", ["a"], [1.0])
    assert (tmp_path / "para.csv").read_text() == "id \t Predicted_Is_Paraphrase \na , 1.0 \n"
    write_predictions(tmp_path / "sts.csv", "sts", ["a"], np.array([1.4582444], dtype=np.float32))
    assert (tmp_path / "sts.csv").read_text() == "id \t Predicted_Similiary \na , 1.4582444429397583 \n"
    assert read_predictions(tmp_path / "sts.csv") == {"a": pytest.approx(1.4582444)}
    with pytest.raises(ValueError, match="2 ids but 1 values"):
        write_predictions(tmp_path / "x.csv", "sst", ["a", "b"], [1])


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="no shared reference predictions")
@pytest.mark.parametrize("task,name", [("sst", "sst"), ("para", "para"), ("sts", "sts")])
def test_headers_match_the_reference_files_byte_for_byte(task, name):
    first = (REFERENCE / f"{name}-dev-output.csv").read_bytes().split(b"\n")[0]
    assert first == f"id \t {tasks.get(task).prediction_column} ".encode()


@pytest.mark.parametrize(
    "text,message",
    [
        ("id \t Predicted_Sentiment \na , 1 \nb , x \n", r"bad.csv line 3: value 'x'"),
        ("id \t Predicted_Sentiment \na 1 \n", r"bad.csv line 2: expected 'id , value'"),
        ("a , 1 \n", r"bad.csv line 1: expected a header"),
        ("id \t Predicted_Sentiment \nA , 1 \na , 2 \n", r"line 3: id 'a' appears twice"),
    ],
)
def test_read_predictions_errors_name_file_and_line(tmp_path, text, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_predictions(bad)


def test_score_file_on_fixtures(tmp_path):
    preds = write_predictions(tmp_path / "p.csv", "para", ["qd1", "QD2", "qd5"], [0.0, 1.0, 0.0])
    assert score_file("para", preds, MINI / "quora-dev.csv") == pytest.approx(2 / 3)  # malformed gold rows skipped
    preds = write_predictions(tmp_path / "s.csv", "sts", ["sd1", "sd2", "sd3"], [1.0, 4.6, 4.2])
    assert score_file("sts", preds, MINI / "sts-dev.csv") == pytest.approx(1.0)


def test_score_file_id_mismatches(tmp_path):
    extra = write_predictions(tmp_path / "e.csv", "sst", ["sstd1", "sstd2", "sstd3", "zz1", "zz2"], [4, 1, 2, 0, 0])
    with pytest.raises(ValueError, match=r"2 id\(s\) not in the gold file \(e\.g\. zz1, zz2\)"):
        score_file("sst", extra, MINI / "ids-sst-dev.csv")
    missing = write_predictions(tmp_path / "m.csv", "sst", ["sstd1"], [4])
    with pytest.raises(ValueError, match=r"2 gold id\(s\) have no prediction"):
        score_file("sst", missing, MINI / "ids-sst-dev.csv")
    probs = write_predictions(tmp_path / "p.csv", "sts", ["sstd1", "sstd2", "sstd3"], [0.9, 1.0, 2.0])
    with pytest.raises(ValueError, match="must be class ids, got 0.9 for id sstd1"):
        score_file("sst", probs, MINI / "ids-sst-dev.csv")
    with pytest.raises(ValueError, match="expected columns"):  # scoring against an unlabelled test file
        score_file("sts", missing, MINI / "sts-test-student.csv")


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="no shared reference predictions")
def test_reference_predictions_rescore_to_published_values():
    scores = {
        task: score_file(task, REFERENCE / f"{task}-dev-output.csv", SHARED / gold)
        for task, gold in [("sst", "ids-sst-dev.csv"), ("para", "quora-dev.csv"), ("sts", "sts-dev.csv")]
    }
    assert {t: round(s, 4) for t, s in scores.items()} == {"sst": 0.5223, "para": 0.8821, "sts": 0.8753}


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="no shared reference predictions")
def test_reference_files_round_trip_byte_for_byte(tmp_path):
    for task in ("sst", "para", "sts"):
        original = REFERENCE / f"{task}-dev-output.csv"
        preds = read_predictions(original)
        copy = write_predictions(tmp_path / original.name, task, list(preds), list(preds.values()))
        assert copy.read_bytes() == original.read_bytes(), task
