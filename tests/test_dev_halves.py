"""The selection/report split of dev (mtlib.data.dev_halves): stratified, disjoint, stable, checksummed; the
trainer chooses on the selection half and reports the other, and predict scores it the same way."""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest

from mtlib.data import dev_halves, parse
from mtlib.data.metrics import read_predictions, score
from mtlib.rundir import read_history, read_metrics
from mtlib.train.identity import run_dir_for
from mtlib.train.rescore import predict_run
from mtlib.train.run_data import load_run_data
from mtlib.train.trainer import run


@pytest.mark.parametrize("task", ["sst", "para", "sts"])
def test_halves_are_stratified_disjoint_stable_and_checksummed(task, small_data_dir):
    dev = list(parse.load_split(task, "dev", small_data_dir))
    selection, report = dev_halves.split_halves(task, dev)
    ids = [ex.id for ex in dev]
    assert sorted(ex.id for ex in selection + report) == sorted(ids) and not {e.id for e in selection} & {
        e.id for e in report
    }
    assert [ex.id for ex in selection] == [i for i in ids if i in {e.id for e in selection}]  # file order
    count = lambda half: collections.Counter(dev_halves.stratum(task, ex.label) for ex in half)  # noqa: E731
    strata = count(dev)
    assert all(abs(count(selection)[k] - count(report)[k]) <= 1 for k in strata)  # each class split evenly
    assert abs(len(selection) - len(report)) <= 1 + len(strata) // 2
    shuffled = random.Random(3).sample(dev, len(dev))  # the file order does not matter
    again = dev_halves.split_halves(task, shuffled)[1]
    assert dev_halves.digest(again) == dev_halves.digest(report) and {e.id for e in again} == {e.id for e in report}


def test_a_run_chooses_on_the_selection_half_and_reports_the_other(smoke_cfg):
    cfg = smoke_cfg.replace(final_dev="full", dev_subsample=10)
    data = load_run_data(cfg)
    run_dir = run(cfg)
    metrics = read_metrics(run_dir)
    assert metrics["dev_half"] == "report" and set(metrics["dev_full"]) == set(metrics["dev"])
    for task in cfg.tasks:
        dev = list(parse.load_split(task, "dev", cfg.data_dir))
        selection, report = dev_halves.split_halves(task, dev)
        assert {ex.id for ex in data["dev_sub"][task]} <= {ex.id for ex in selection}  # every epoch: selection
        assert metrics["data"][task]["report_sha256"] == dev_halves.digest(report)
        # metrics.dev is the report half's score of the written predictions; dev_full all of them
        predicted = read_predictions(run_dir / "predictions" / f"{task}-dev-output.csv")
        gold = {ex.id: ex.label for ex in dev}
        mine = [i for i in predicted if i in data["report"][task]]
        expected = score(task, np.array([predicted[i] for i in mine]), np.array([gold[i] for i in mine], dtype=float))
        assert metrics["dev"][task] == pytest.approx(expected, abs=1e-9)
        everything = list(predicted)
        full = score(task, np.array([predicted[i] for i in everything]), np.array([gold[i] for i in everything], float))
        assert metrics["dev_full"][task] == pytest.approx(full, abs=1e-9)
    evals = [r for r in read_history(run_dir) if r["type"] == "eval"]
    assert evals and all(r["mean"] is not None for r in evals)
    # predict gives back the run's own report-half scores
    result = predict_run(run_dir, "dev", out_dir=run_dir.parent.parent / "predict")
    assert result["scores"] == pytest.approx(metrics["dev"]) and result["scores_full"] == pytest.approx(
        metrics["dev_full"]
    )


def test_the_split_is_part_of_the_run_id_and_none_reports_all_of_dev(smoke_cfg):
    assert run_dir_for(smoke_cfg) != run_dir_for(smoke_cfg.replace(dev_split="none"))
    metrics = read_metrics(run(smoke_cfg.replace(dev_split="none")))
    assert "dev_half" not in metrics and "dev_full" not in metrics
