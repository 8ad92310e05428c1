"""Confusion matrices and the STS scatter from synthetic prediction files; the claims' forest plot."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from mtlib.data.metrics import write_predictions
from mtlib.results import plots
from mtlib.results.plots.claims import VERDICT_COLORS

SST = [("s1", 0), ("s2", 1), ("s3", 2), ("s4", 3), ("s5", 4), ("s6", 4), ("s7", 2)]
QUORA = [("q1", 0), ("q2", 1), ("q3", 1), ("q4", 0)]
STS = [("t1", 0.0), ("t2", 2.5), ("t3", 5.0), ("t4", 3.8)]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def course_data(root: Path) -> Path:
    """Labelled dev files in the course layout (tab-separated, leading index column)."""
    root.mkdir()
    (root / "ids-sst-dev.csv").write_text(
        "\tid\tsentence\tsentiment\n" + "".join(f"{i}\t{k}\ta sentence .\t{y}\n" for i, (k, y) in enumerate(SST))
    )
    (root / "quora-dev.csv").write_text(
        "\tid\tsentence1\tsentence2\tis_duplicate\n"
        + "".join(f"{i}\t{k}\tone ?\ttwo ?\t{float(y)}\n" for i, (k, y) in enumerate(QUORA))
    )
    (root / "sts-dev.csv").write_text(
        "\tid\tsentence1\tsentence2\tsimilarity\n"
        + "".join(f"{i}\t{k}\tone .\ttwo .\t{y}\n" for i, (k, y) in enumerate(STS))
    )
    return root


def prediction_run(out: Path, data_dir: Path, tasks=("sst", "para", "sts"), name: str = "base") -> Path:
    run_dir = out / f"{name}-abc" / "seed1"
    (run_dir / "predictions").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"name": name, "data_dir": str(data_dir)}))
    predicted = {"sst": [0, 1, 2, 2, 4, 3, 2], "para": [0, 1, 0, 0], "sts": [0.5, 2.0, 4.5, 3.0]}
    gold = {"sst": SST, "para": QUORA, "sts": STS}
    for task in tasks:
        write_predictions(
            run_dir / "predictions" / f"{task}-dev-output.csv", task, [k for k, _ in gold[task]], predicted[task]
        )
    return run_dir


def test_dev_predictions_and_confusion_counts(tmp_path):
    run_dir = prediction_run(tmp_path / "runs", course_data(tmp_path / "data"))
    pairs = plots.dev_predictions(run_dir)
    assert set(pairs) == {"sst", "para", "sts"}
    sst = plots.confusion_counts("sst", pairs["sst"])
    assert sst.shape == (5, 5) and sst.sum() == len(SST) and np.trace(sst) == 5
    assert sst[3, 2] == 1 and sst[4, 3] == 1  # gold rows, predicted columns
    para = plots.confusion_counts("para", pairs["para"])
    assert para.tolist() == [[2, 0], [1, 1]]
    assert pairs["sts"]["gold"].tolist() == [0.0, 2.5, 5.0, 3.8]


def test_prediction_panels_show_counts_and_scores(tmp_path):
    data_dir = course_data(tmp_path / "data")
    runs = [
        prediction_run(tmp_path / "runs", data_dir),
        prediction_run(tmp_path / "runs", data_dir, ("sst",), "pcgrad"),
    ]
    fig = plots.prediction_panels(runs, labels={"base": "BaseModel"})
    axes = fig.axes
    assert len(axes) == 6
    assert [t.get_text() for t in axes[1].texts] == ["2", "0", "1", "1"]  # Quora counts, row by row
    assert "accuracy 0.714" in axes[0].get_title() and "accuracy 0.750" in axes[1].get_title()
    sts_pred, sts_gold = [0.5, 2.0, 4.5, 3.0], [0.0, 2.5, 5.0, 3.8]
    assert f"Pearson r {np.corrcoef(sts_pred, sts_gold)[0, 1]:.3f}" in axes[2].get_title()
    assert axes[2].get_xlabel().startswith("gold (0\u20135)")
    assert any("BaseModel" in t.get_text() for t in axes[0].texts)
    assert any("no dev predictions" in t.get_text() for t in axes[4].texts)  # pcgrad wrote SST only
    path = plots.save(fig, "pred", tmp_path / "figures")
    assert path.is_file() and path.stat().st_size > 5000
    assert plots.prediction_panels([]).axes  # no runs: a figure that says so


def test_predictions_from_another_data_folder_are_refused(tmp_path):
    run_dir = prediction_run(tmp_path / "runs", course_data(tmp_path / "data"))
    other = tmp_path / "other"
    other.mkdir()
    for name in ("ids-sst-dev.csv", "quora-dev.csv", "sts-dev.csv"):
        (other / name).write_text((tmp_path / "data" / name).read_text().replace("\ts1\t", "\tzz\t"))
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"name": "base", "data_dir": str(other)}))
    with pytest.raises(ValueError, match=r"sst-dev-output.csv: 1 id\(s\) not in the sst dev file"):
        plots.dev_predictions(run_dir)


def test_claims_forest(tmp_path):
    table = pd.DataFrame(
        [
            {
                "id": "w",
                "claim": "a beats b",
                "compare": "a > b",
                "metric": "mean",
                "n_seeds": 3,
                "difference": 0.1,
                "ci_low": 0.05,
                "ci_high": 0.15,
                "verdict": "holds",
                "paper_difference": 0.2,
                "paper_says": None,
            },
            {
                "id": "o",
                "claim": "c beats d",
                "compare": "c > d",
                "metric": "sts",
                "n_seeds": 1,
                "difference": -0.1,
                "ci_low": math.nan,
                "ci_high": math.nan,
                "verdict": "inconclusive",
                "paper_difference": 0.1,
                "paper_says": None,
            },
            {
                "id": "s",
                "claim": "e is faster",
                "compare": "e < f",
                "metric": "examples_to_target",
                "n_seeds": 0,
                "difference": math.nan,
                "ci_low": math.nan,
                "ci_high": math.nan,
                "verdict": "inconclusive",
                "paper_difference": math.nan,
                "paper_says": "sooner",
            },
        ]
    )
    fig = plots.claims_forest(table)
    score, speed = fig.axes
    assert [t.get_text().splitlines()[0] for t in score.get_yticklabels()] == ["a beats b", "c beats d"]
    assert "examples" in speed.get_xlabel() and any("no paired runs" in t.get_text() for t in speed.texts)
    bars = [line for line in score.lines if len(line.get_xdata()) == 2 and line.get_xdata()[0] == 0.05]
    assert bars and bars[0].get_color() == VERDICT_COLORS["holds"]  # the CI bar, coloured by the verdict
    paper = [line for line in score.lines if line.get_marker() == "D"]
    assert [line.get_xdata()[0] for line in paper] == [0.2, 0.1]
    assert plots.save(fig, "forest", tmp_path).is_file()


def test_claims_forest_draws_the_adjusted_interval_and_the_margin():
    rec = {
        "id": "n",
        "claim": "a does not help",
        "kind": "non_superiority",
        "compare": "a <= b",
        "metric": "mean",
        "margin": 0.01,
        "n_seeds": 4,
        "difference": 0.002,
        "ci_low": -0.004,
        "ci_high": 0.008,
        "adj_low": -0.007,
        "adj_high": 0.011,
        "verdict": "below resolution",
        "paper_difference": math.nan,
        "paper_says": None,
    }
    few = {**rec, "id": "f", "kind": "directional", "margin": math.nan, "ci_low": -math.inf, "ci_high": math.inf}
    (ax,) = plots.claims_forest(pd.DataFrame([rec, few])).axes
    spans = {tuple(line.get_xdata()) for line in ax.lines if len(line.get_xdata()) == 2}
    assert {(-0.004, 0.008), (-0.007, 0.011), (0.01, 0.01)} <= spans  # 95% CI, Holm-adjusted, the margin δ
    bar = next(line for line in ax.lines if tuple(line.get_xdata()) == (-0.004, 0.008))
    assert bar.get_color() == VERDICT_COLORS["below resolution"]
    assert any("no interval" in t.get_text() for t in ax.texts)  # the sign-flip test with too few seeds
