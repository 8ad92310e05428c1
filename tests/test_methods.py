"""Notebook 08's logic: the methods table and the exposure-vs-surgery verdict from run directories, and the
PAL-sampled compromise groups without the n_t divisors."""

import json

import pandas as pd
import pytest
import torch

from mtlib.results import methods
from mtlib.train.steps import CompromiseStep


def fake_run(root, name, seed, mean, conflict=0.5, share=0.01):
    d = root / name / f"seed{seed}"
    d.mkdir(parents=True)
    dev = {"sst": mean, "para": mean, "sts": mean}
    (d / "metrics.json").write_text(
        json.dumps(
            {"name": name, "seed": seed, "dev": dev, "speed": {"pretrain": {}, "finetune": {"combine_share": share}}}
        )
    )
    grad = {"type": "grad", "conflict_share": conflict, "pairs": {"sst|para": -0.1, "sst|sts": 0.2, "para|sts": 0.0}}
    (d / "history.jsonl").write_text(json.dumps(grad) + "\n" + json.dumps(grad) + "\n")
    return d


def runs(tmp_path, means: dict[str, list[float]]):
    return [fake_run(tmp_path, name, s, m) for name, ms in means.items() for s, m in enumerate(ms, 1)]


def test_exposure_not_surgery(tmp_path):
    dirs = runs(
        tmp_path,
        {
            "pal_h1_pretrain": [0.50, 0.52, 0.51],
            "sum_all": [0.60, 0.61, 0.62],
            "pcgrad": [0.61, 0.60, 0.62],
            "gradvac": [0.59, 0.62, 0.61],
        },
    )
    effects = methods.effects_table(dirs)
    assert effects.loc["exposure", "verdict"] == "holds"
    assert effects.loc["exposure", "difference"] == pytest.approx(0.10)
    assert effects.loc["surgery (PCGrad)", "verdict"] == "inconclusive"
    assert methods.exposure_or_surgery(effects).startswith("exposure, not surgery")


def test_surgery_and_one_seed(tmp_path):
    dirs = runs(
        tmp_path,
        {
            "pal_h1_pretrain": [0.60, 0.61, 0.60],
            "sum_all": [0.60, 0.60, 0.61],
            "pcgrad": [0.65, 0.66, 0.66],
            "gradvac": [0.60, 0.59, 0.61],
        },
    )
    assert methods.exposure_or_surgery(methods.effects_table(dirs)).startswith("surgery")
    one = runs(tmp_path / "one", {"pal_h1_pretrain": [0.5], "sum_all": [0.6], "pcgrad": [0.58], "gradvac": [0.61]})
    text = methods.exposure_or_surgery(methods.effects_table(one))
    assert text.startswith("inconclusive (one seed: no interval); the point estimates favour exposure")
    assert "PCGrad -0.020" in text and "Vaccine +0.010" in text
    assert methods.exposure_or_surgery(methods.effects_table([])).startswith("not yet answerable")


def test_methods_table_reads_scores_cost_and_conflicts(tmp_path):
    dirs = runs(tmp_path, {"upgrad": [0.6, 0.7], "pcgrad": [0.5]})
    table = methods.methods_table(dirs).set_index("id")
    assert table.loc["upgrad", "n_seeds"] == 2 and table.loc["upgrad", "mean"] == pytest.approx(0.65)
    assert table.loc["upgrad", "mean_ci"] > 0 and pd.isna(table.loc["pcgrad", "mean_ci"])
    assert table.loc["upgrad", "combine_share"] == 0.01 and table.loc["upgrad", "conflict_share"] == 0.5
    assert table.loc["upgrad", "cos sst|para"] == pytest.approx(-0.1)
    assert table.loc["upgrad", "method_paper"].startswith("Quinton & Rey 2024")
    assert table.loc["sum_famo", "loss_weighting"] == "famo" and table.loc["sum_famo", "n_seeds"] == 0
    assert set(methods.method_rows()[0]) >= {"id", "config"}
    assert [p.name for p in methods.run_dirs_of(methods.methods_table(dirs), ["upgrad"])] == ["seed1", "seed2"]


class Groups:
    def group(self, k, mode):
        return ["sst"] * 4 + ["para"] * 2 + ["sts"]


@pytest.mark.parametrize("divide", [True, False])
def test_compromise_groups_with_and_without_the_divisors(divide):
    step = CompromiseStep(
        None,
        None,
        None,
        ["sst", "para", "sts"],
        torch.Generator(),
        sampler=Groups(),
        k=7,
        combine="force",
        counts="update",
        num_epochs=2,
        divide=divide,
    )
    counts, divisors = step.group(1)
    assert counts == {"sst": 4, "para": 2, "sts": 1}
    assert divisors == ({"sst": 4.0, "para": 2.0, "sts": 1.0} if divide else dict.fromkeys(counts, 1.0))
