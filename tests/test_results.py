"""mtlib.results.scores: the results table from synthetic metrics.json files, CIs, both mean formulas, markdown."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from scipy import stats

from mtlib.results import intervals, scores
from mtlib.experiments.rows import load_experiments
from mtlib.experiments.resolve import resolve_config

ROWS = [
    {
        "id": "base_pal",
        "label": "BaseModel + Pal schedule",
        "notebook": "02_baselines",
        "paper": {"sst": 0.499, "para": 0.869, "sts": 0.856, "mean": 0.741},
        "config": {"n_hidden_layers": 0, "sampler": "pal"},
    },
    {
        "id": "pcgrad",
        "label": "BaseModel + 1 hidden + PCGrad | surgery",
        "notebook": "03_gradient_methods",
        "paper": {"sst": 0.484, "para": 0.871, "sts": 0.832, "mean": 0.729},
        "config": {"n_hidden_layers": 1},
    },
]


def metrics(
    name: str,
    seed: int,
    sst: float,
    para: float,
    sts: float,
    backbone: str = "minilm-l6",
    config_hash: str = "h",
    dev_split: str = "full",
) -> dict:
    data = {
        t: {
            "train_raw": 100,
            "train_filtered": 90,
            "train_used": 80,
            "augmented": 0,
            "dev": 50,
            "dev_subsample": 20,
            "test": 0,
        }
        for t in ("sst", "para", "sts")
    }
    data["quora_train"] = "subset head+extra (56,331 usable of 141,506)"
    return {
        "name": name,
        "seed": seed,
        "config_hash": config_hash,
        "backbone": backbone,
        "dev": {"sst": sst, "para": para, "sts": sts, "mean": (sst + para + sts) / 3},
        "dev_split": dev_split,
        "examples_seen": 1000,
        "train_seconds": 1.0,
        "data": data,
        "params": {},
    }


def write(out: Path, m: dict, config: dict | None = None) -> Path:
    run_dir = out / f"{m['name']}-{m['config_hash']}{m['seed']}" / f"seed{m['seed']}"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps(m))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config or {"name": m["name"], "final_dev_max": 5000}))
    return run_dir


def test_t_quantile():
    assert intervals.t_quantile_975(1) == pytest.approx(12.7062, abs=1e-4)
    assert intervals.t_quantile_975(30) == pytest.approx(2.0423, abs=1e-4)
    assert intervals.t_quantile_975(31) < 2.0423
    with pytest.raises(ValueError):
        intervals.t_quantile_975(0)
    for df in (1, 2, 5, 29, 31, 40, 100, 1000):
        assert intervals.t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-12)  # scipy's own


def test_mean_ci():
    assert math.isnan(intervals.mean_ci([])[0])
    mean, ci = intervals.mean_ci([0.5])
    assert mean == 0.5 and math.isnan(ci)
    mean, ci = intervals.mean_ci([0.4, 0.6])
    assert mean == pytest.approx(0.5)
    assert ci == pytest.approx(12.7062 * (0.2 / math.sqrt(2)) / math.sqrt(2))  # t * s / sqrt(n)
    assert intervals.mean_ci([0.3, 0.3, 0.3])[1] == 0.0


def test_course_means():
    course = ("sst", "para", "sts")
    assert scores.means({"sst": 0.5, "para": 0.8, "sts": 0.8}, course) == pytest.approx((0.7, (0.5 + 0.8 + 0.9) / 3))
    assert scores.means({"sst": 0.5, "para": 0.8, "sts": -1.0}, course)[1] == pytest.approx(1.3 / 3)  # r = -1 maps to 0


def test_a_collapsed_seed_counts_with_sts_r_zero(tmp_path):
    write(tmp_path, metrics("base_pal", 1, 0.40, 0.80, 0.60))
    old = metrics("base_pal", 2, 0.50, 0.90, 0.0)
    old["dev"]["sts"] = None  # a constant STS prediction as runs before D51 wrote it (NaN as null)
    write(tmp_path, old)
    row = scores.results_table(tmp_path, experiments=ROWS).iloc[0]
    assert row["n_seeds"] == 2 and row["sts"] == pytest.approx(0.30)  # (0.6 + 0) / 2: counted, not dropped
    assert row["mean"] == pytest.approx((0.6 + (0.5 + 0.9) / 3) / 2)
    assert scores.collapsed_tasks(old) == ("sts",) and scores.dev_scores(old)["sts"] == 0.0


def test_results_table_two_seeds_give_a_ci_and_both_means(tmp_path):
    write(tmp_path, metrics("base_pal", 1, 0.40, 0.80, 0.60))
    write(tmp_path, metrics("base_pal", 2, 0.50, 0.90, 0.80))
    write(tmp_path, metrics("other_row", 1, 0.9, 0.9, 0.9))  # no experiments row: ignored
    table = scores.results_table(tmp_path, experiments=ROWS)
    assert list(table["id"]) == ["base_pal", "pcgrad"]  # table order, every row
    row = table.iloc[0]
    assert row["n_seeds"] == 2
    assert row["sst"] == pytest.approx(0.45) and row["sts"] == pytest.approx(0.70)
    assert row["sst_ci"] == pytest.approx(12.7062 * 0.05)  # half the spread of two values, times t(1)
    assert row["mean"] == pytest.approx((0.6 + 0.7333333) / 2, abs=1e-6)  # plain mean per seed, then over seeds
    later = [(0.4 + 0.8 + 0.8) / 3, (0.5 + 0.9 + 0.9) / 3]  # STS (r + 1) / 2
    assert row["mean_sts01"] == pytest.approx(sum(later) / 2)
    assert row["mean_sts01_ci"] == pytest.approx(intervals.mean_ci(later)[1])
    assert row["paper_mean"] == 0.741
    assert row["paper_mean_sts01"] == pytest.approx((0.499 + 0.869 + 0.928) / 3)
    assert row["delta_mean"] == pytest.approx(row["mean"] - 0.741)
    empty = table.iloc[1]
    assert empty["n_seeds"] == 0 and math.isnan(empty["sst"]) and math.isnan(empty["delta_mean"])
    assert empty["paper_sst"] == 0.484
    assert len(table.attrs["runs"]) == 2


def test_results_table_one_seed_has_nan_ci(tmp_path):
    write(tmp_path, metrics("pcgrad", 7, 0.5, 0.8, 0.7))
    row = scores.results_table(tmp_path, experiments=ROWS).iloc[1]
    assert row["n_seeds"] == 1 and row["sst"] == 0.5 and math.isnan(row["sst_ci"]) and math.isnan(row["mean_ci"])


def test_results_table_no_runs_folder(tmp_path):
    table = scores.results_table(tmp_path / "missing")
    assert len(table) == len(load_experiments())
    assert (table["n_seeds"] == 0).all() and table["mean"].isna().all()
    beyond = [bool(r.get("beyond_paper")) for r in load_experiments()]
    assert beyond.count(True) > 0, "the test needs rows beyond the paper"
    assert list(table["paper_mean"].isna()) == beyond  # the paper's rows carry its numbers, the rest none
    assert list(scores.results_table(tmp_path / "missing", notebook="03_gradient_methods")["id"]) == [
        r["id"] for r in load_experiments() if r["notebook"] == "03_gradient_methods"
    ]


def test_results_table_keeps_only_the_profiles_runs(tmp_path):
    row = ROWS[0]
    out = str(tmp_path)
    smoke = resolve_config("smoke", row=row, seed=11711, out_dir=out)
    quick = resolve_config("quick", row=row, seed=11711, out_dir=out)
    assert smoke.settings_hash() != quick.settings_hash()
    write(tmp_path, metrics("base_pal", 11711, 0.2, 0.5, 0.1, config_hash=smoke.settings_hash()), smoke.to_dict())
    write(tmp_path, metrics("base_pal", 11711, 0.4, 0.8, 0.7, config_hash=quick.settings_hash()), quick.to_dict())
    other_seed = resolve_config("smoke", row=row, seed=3, out_dir=out)  # a seed the profile does not list still counts
    write(tmp_path, metrics("base_pal", 3, 0.3, 0.5, 0.1, config_hash=other_seed.settings_hash()), other_seed.to_dict())
    table = scores.results_table(tmp_path, experiments=ROWS, profile="smoke")
    assert table.iloc[0]["n_seeds"] == 2 and table.iloc[0]["sst"] == pytest.approx(0.25)
    table = scores.results_table(tmp_path, experiments=ROWS, profile="quick")
    assert table.iloc[0]["n_seeds"] == 1 and table.iloc[0]["sst"] == pytest.approx(0.4)
    assert scores.results_table(tmp_path, experiments=ROWS).iloc[0]["n_seeds"] == 3  # no profile: every run


def test_provenance_text(tmp_path):
    runs = [metrics("base_pal", 1, 0.4, 0.8, 0.6), metrics("base_pal", 2, 0.5, 0.9, 0.8)]
    text = scores.provenance(runs)
    assert "minilm-l6" in text and scores.MINILM_NOTE in text
    assert "subset head+extra (56,331 usable of 141,506)" in text
    assert "Seeds: 1, 2 (2 per row" in text
    assert "full dev sets" in text and "sst 50" in text
    tiny = scores.provenance([metrics("base_pal", 1, 0.4, 0.8, 0.6, backbone="tiny-random", dev_split="subsample")])
    assert scores.MINILM_NOTE not in tiny and "subsample" in tiny and "sst 20" in tiny
    empty = scores.provenance([], profile="quick")
    assert "No finished runs" in empty and "--profile quick" in empty


def test_provenance_from_table_and_folder(tmp_path):
    for m in (metrics("base_pal", 1, 0.4, 0.8, 0.6), metrics("pcgrad", 1, 0.4, 0.8, 0.6, backbone="tiny-random")):
        write(tmp_path, m)
    table = scores.results_table(tmp_path, experiments=ROWS)
    text = scores.provenance(table)
    assert "2 finished run(s) of 2 row(s)" in text and "capped at 5,000" in text
    only_pcgrad = table[table["id"] == "pcgrad"]  # a notebook's slice describes its own runs
    assert scores.MINILM_NOTE not in scores.provenance(only_pcgrad)
    assert "finished run(s)" in scores.provenance(tmp_path)  # a runs folder works too


def test_markdown_and_results_md(tmp_path):
    write(tmp_path / "runs", metrics("base_pal", 1, 0.4, 0.8, 0.6))
    write(tmp_path / "runs", metrics("base_pal", 2, 0.5, 0.9, 0.8))
    table = scores.results_table(tmp_path / "runs", experiments=ROWS)
    text = scores.to_markdown(table, "line one\nline two")
    lines = text.splitlines()
    assert lines[0].startswith("| id") and set(lines[1]) <= set("|:-")
    assert len({len(line) for line in lines[:4]}) == 1  # aligned columns
    assert "0.450 ± 0.635" in lines[2]  # 12.7062 * 0.05
    assert "\\|" in lines[3] and "—" in lines[3]  # escaped pipe in the label; NaN as a dash
    assert "- line one" in text and "- line two" in text
    path = scores.write_results_md(tmp_path / "out" / "results.md", table=table)
    body = path.read_text()
    assert body.startswith("# Results") and "(r + 1)/2" in body and scores.MINILM_NOTE in body
    path = scores.write_results_md(tmp_path / "empty.md", out_dir=tmp_path / "none", profile="smoke")
    assert "No finished runs" in path.read_text()


def test_run_config_read_once_and_reread_when_changed(tmp_path, monkeypatch):
    d = tmp_path / "r-abc" / "seed1"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"final_dev_max": 5}))
    run = {"run_dir": str(d)}
    loads = []
    real = yaml.safe_load
    from mtlib.rundir import read as rundir_read

    monkeypatch.setattr(rundir_read.yaml, "safe_load", lambda text: loads.append(1) or real(text))
    assert scores._run_config(run) == {"final_dev_max": 5}
    scores._run_config(run)["final_dev_max"] = 99  # a caller's change does not reach the cache
    assert scores._run_config(run) == {"final_dev_max": 5} and len(loads) == 1
    (d / "config.yaml").write_text(yaml.safe_dump({"final_dev_max": 123}))
    assert scores._run_config(run) == {"final_dev_max": 123}
    assert scores._run_config({"run_dir": str(tmp_path / "missing")}) == {}


def test_provenance_says_when_runs_come_from_different_code_versions():
    old, new = (
        {"mtlib": "0.1.0", "commit": "aaaaaaaaaaaa", "dirty": False},
        {"mtlib": "0.1.0", "commit": "bbbbbbbbbbbb", "dirty": True},
    )
    same = scores.provenance([{**metrics("base_pal", s, 0.4, 0.8, 0.6), "code": old} for s in (1, 2)])
    assert "Code: mtlib 0.1.0 aaaaaaaaaaaa." in same and "code versions" not in same
    mixed = scores.provenance(
        [
            {**metrics("base_pal", 1, 0.4, 0.8, 0.6), "code": old},
            {**metrics("base_pal", 2, 0.4, 0.8, 0.6), "code": new},
            metrics("pcgrad", 1, 0.4, 0.8, 0.6),
        ]
    )  # a run from before versions were recorded
    assert "come from 3 code versions" in mixed
    assert "aaaaaaaaaaaa (1 run)" in mixed and "bbbbbbbbbbbb+dirty (1 run)" in mixed and "unrecorded" in mixed


def test_a_trained_run_records_its_code_version(smoke_cfg):
    from mtlib.train.code_version import code_version
    from mtlib.train.trainer import run

    run_dir = run(smoke_cfg.replace(epochs=1, batches_per_epoch=2))
    recorded = json.loads((run_dir / "metrics.json").read_text())["code"]
    assert recorded == code_version() == json.loads((run_dir / "identity.json").read_text())["code"]
    assert recorded["mtlib"] and (recorded["commit"] is None or len(recorded["commit"]) == 12)
