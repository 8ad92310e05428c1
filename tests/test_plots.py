"""mtlib.results.plots: every figure function on small synthetic histories (and the real data where it needs it)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.collections import PolyCollection
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from mtlib import data
from mtlib.results import plots
from mtlib.methods.samplers import pal_probabilities


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _data_dir() -> Path | None:
    for root in (data.default_data_dir(), data.SHARED_MIRROR):
        if (root / "ids-sst-train.csv").is_file() and (root / "quora-train-subset-head.csv").is_file():
            return root
    return None


needs_data = pytest.mark.skipif(_data_dir() is None, reason="course data not fetched (python -m mtlib data fetch)")


def history(n_epochs: int = 3, offset: float = 0.0, grads: int = 0, phases: int = 1) -> list[dict]:
    """A history.jsonl as the Trainer writes it: train/eval rows per epoch, optional grad rows."""
    rows: list[dict] = [{"type": "start", "wall": 0.0, "config_hash": "x"}]
    seen, wall = 0, 0.0
    for phase in range(phases):
        for epoch in range(1, n_epochs + 1):
            for g in range(grads):
                seen += 24
                wall += 0.5
                beta = 0.2 + 0.8 * (epoch - 1) / max(n_epochs - 1, 1)
                c = (-0.1 + 0.05 * g, 0.2, -0.3 + 0.1 * epoch)
                rows.append(
                    {
                        "type": "grad",
                        "epoch": epoch,
                        "examples_seen": seen,
                        "wall": wall,
                        "cosine": [[1, c[0], c[1]], [c[0], 1, c[2]], [c[1], c[2], 1]],
                        "pairs": {"sst|para": c[0], "sst|sts": c[1], "para|sts": c[2]},
                        "conflict_share": sum(x < 0 for x in c) / 3,
                        "norms": {"sst": 1.0 + g, "para": 0.5, "sts": 10.0},
                        "counts": {"sst": 2, "para": 3, "sts": 1},
                        "beta": beta,
                    }
                )
            seen += 48
            wall += 1.0
            rows.append(
                {
                    "type": "train",
                    "phase": phase,
                    "epoch": epoch,
                    "step": 6,
                    "examples_seen": seen,
                    "wall": wall,
                    "loss": {"sst": 1.0, "para": 0.7},
                }
            )
            score = 0.3 + 0.1 * epoch + offset
            rows.append(
                {
                    "type": "eval",
                    "phase": phase,
                    "phase_name": ["pretrain", "finetune"][phase % 2],
                    "epoch": epoch,
                    "examples_seen": seen,
                    "wall": wall,
                    "sst": score,
                    "para": score + 0.2,
                    "sts": score - 0.1,
                    "mean": score + 1 / 30,
                    "task_counts": {"sst": 1, "para": 4, "sts": epoch},
                    "probabilities": {"sst": 0.2, "para": 0.6, "sts": 0.2},
                    "improved": True,
                }
            )
    rows.append({"type": "final", "sst": 0.5, "para": 0.7, "sts": 0.3, "mean": 0.5})
    return rows


def write_run(root: Path, name: str, seed: int, rows: list[dict]) -> Path:
    run_dir = root / f"{name}-abc{seed}" / f"seed{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"name": name, "seed": seed}))
    return run_dir


def lines(ax) -> list:
    return ax.get_lines()


# ---------------------------------------------------------------- save


def test_save_writes_png(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    path = plots.save(fig, "demo", tmp_path / "figs")
    assert path == tmp_path / "figs" / "demo.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plots.save(fig, "again.png", tmp_path).name == "again.png"  # no doubled suffix


def test_agg_backend_outside_notebooks():
    assert plt.get_backend().lower() == "agg"


# ---------------------------------------------------------------- dev curves


def test_dev_curves_average_seeds_sharing_a_name(tmp_path):
    a1 = write_run(tmp_path, "base_pal", 1, history(offset=0.0))
    a2 = write_run(tmp_path, "base_pal", 2, history(offset=0.1))
    b = write_run(tmp_path, "pcgrad", 1, history(n_epochs=2))
    fig = plots.dev_curves([a1, a2, b])
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(lines(ax)) == 2  # one per run name
    mean_line = lines(ax)[0]
    assert np.allclose(mean_line.get_ydata(), [0.3 + 0.1 * e + 0.05 + 1 / 30 for e in (1, 2, 3)])
    assert np.allclose(mean_line.get_xdata(), [48, 96, 144])
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1  # min/max band for the 2 seeds only
    assert "2 seeds" in ax.get_legend().get_texts()[0].get_text()


def test_dev_curves_metrics_x_and_labels(tmp_path):
    h1, h2 = history(), history(phases=2)
    fig = plots.dev_curves([h1, h2], metric=["mean", "sst", "sts"], x="epoch", labels=["a", "b"])
    assert len(fig.axes) == 3
    assert all(len(lines(ax)) == 2 for ax in fig.axes)
    assert list(lines(fig.axes[0])[1].get_xdata()) == [1, 2, 3, 4, 5, 6]  # epochs counted across phases
    fig = plots.dev_curves([h1, h2], x="wall", labels=["same", "same"])  # equal labels = seeds of one curve
    assert len(lines(fig.axes[0])) == 1
    fig = plots.dev_curves(h1)  # a single history
    assert len(lines(fig.axes[0])) == 1
    with pytest.raises(ValueError, match="labels"):
        plots.dev_curves([h1, h2], labels=["only one"])
    with pytest.raises(ValueError, match="unknown x"):
        plots.dev_curves(h1, x="steps")


def test_dev_curves_label_mapping_by_run_name(tmp_path):
    a = write_run(tmp_path, "base_pal", 1, history())
    fig = plots.dev_curves([a], labels={"base_pal": "PAL schedule"})
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "PAL schedule"


def test_speed_curves_two_panels(tmp_path):
    runs = [write_run(tmp_path, n, 1, history()) for n in ("compromise", "base_pal_h1", "gradvac")]
    fig = plots.speed_curves(runs, labels=["compromise", "PAL schedule", "Vaccine"])
    assert len(fig.axes) == 2
    assert [len(lines(ax)) for ax in fig.axes] == [3, 3]
    assert "examples" in fig.axes[0].get_xlabel() and "seconds" in fig.axes[1].get_xlabel()


# ---------------------------------------------------------------- schedules


def test_task_ratios_match_pal_probabilities():
    sizes = {"sst": 267, "para": 8845, "sts": 189}
    fig = plots.task_ratios(sizes, 10)
    (ax,) = fig.axes
    assert len(lines(ax)) == 3
    for k, line in enumerate(lines(ax)):
        expected = [pal_probabilities(sizes, e, 10)[k] for e in range(1, 11)]
        assert np.allclose(line.get_ydata(), expected)
    assert np.isclose(lines(ax)[1].get_ydata()[0], 0.9510, atol=1e-4)  # docs/original.md §3's example


def test_observed_task_counts_bars_and_shares(tmp_path):
    run = write_run(tmp_path, "base_pal", 1, history(n_epochs=4))
    fig = plots.observed_task_counts(run)
    ax, ax_share = fig.axes
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 3 and all(len(b) == 4 for b in bars)  # 3 tasks x 4 epochs
    assert [p.get_height() for p in bars[2]] == [1, 2, 3, 4]  # sts counts
    assert len(lines(ax_share)) == 6  # observed and scheduled per task
    assert np.allclose(lines(ax_share)[1].get_ydata(), 0.2)
    with pytest.raises(ValueError, match="no eval rows"):
        plots.observed_task_counts([{"type": "start"}])


# ---------------------------------------------------------------- gradients


def test_conflict_diagnostics_panels(tmp_path):
    run = write_run(tmp_path, "pcgrad", 1, history(grads=4))
    fig = plots.conflict_diagnostics(run)
    ax_cos, ax_share, ax_norm = fig.axes
    assert len(lines(ax_cos)) == 2 * 3 + 1  # raw + smoothed per pair, and the zero line
    assert len(lines(ax_share)) == 1 and len(lines(ax_norm)) == 3
    assert ax_norm.get_yscale() == "log"
    raw = lines(ax_cos)[0].get_ydata()
    assert len(raw) == 12 and np.isclose(raw[0], -0.1)
    with pytest.raises(ValueError, match="no grad rows"):
        plots.conflict_diagnostics(history())


def _arrows(ax) -> list[tuple[np.ndarray, np.ndarray]]:
    return [tuple(map(np.asarray, p._posA_posB)) for p in ax.patches if isinstance(p, FancyArrowPatch)]


def test_gradient_toy_pcgrad_panel_removes_the_conflict():
    g1, g2 = np.array([1.0, 0.3]), np.array([-0.8, 0.6])
    fig = plots.gradient_toy(g1, g2, target=None)
    assert len(fig.axes) == 2
    plain, pc = fig.axes
    assert len(_arrows(plain)) == 3  # g1, g2, their sum
    ends = [end for _, end in _arrows(pc)]
    assert len(ends) == 5  # faint originals, g1', g2', update
    g1p, g2p, update = ends[2], ends[3], ends[4]
    assert abs(g1p @ g2) < 1e-6 and abs(g2p @ g1) < 1e-6  # projections are orthogonal to the other gradient
    assert np.allclose(update, g1p + g2p, atol=1e-6)
    assert np.allclose(_arrows(plain)[2][1], g1 + g2)


def test_gradient_toy_gradvac_panel_reaches_the_target():
    g1, g2 = np.array([1.0, 0.25]), np.array([-0.55, 0.9])
    fig = plots.gradient_toy(g1, g2, target=0.3)
    assert len(fig.axes) == 3
    ends = [end for _, end in _arrows(fig.axes[2])]
    g1v = ends[2]
    assert math.isclose(g1v @ g2 / (np.linalg.norm(g1v) * np.linalg.norm(g2)), 0.3, abs_tol=1e-5)


def test_compromise_parts_counts_and_beta(tmp_path):
    run = write_run(tmp_path, "compromise", 1, history(n_epochs=3, grads=2))
    fig = plots.compromise_parts(run)
    ax, ax_beta = fig.axes
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 3 and all(len(b) == 6 for b in bars)  # 3 tasks x 6 updates
    assert [p.get_height() for p in bars[1]] == [3] * 6
    beta = lines(ax_beta)[0].get_ydata()
    assert np.allclose(beta, [0.2, 0.2, 0.6, 0.6, 1.0, 1.0])


# ---------------------------------------------------------------- results


def test_results_bars_ours_and_paper():
    table = pd.DataFrame(
        {
            "id": ["a", "b"],
            **{m: [0.5, np.nan] for m in ("mean", "sst", "para")},
            "sts": [-0.1, np.nan],
            **{f"{m}_ci": [0.02, np.nan] for m in ("mean", "sst", "para", "sts")},
            **{f"paper_{m}": [0.6, 0.7] for m in ("mean", "sst", "para", "sts")},
        }
    )
    fig = plots.results_bars(table)
    assert len(fig.axes) == 4
    for ax in fig.axes:
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        assert len(bars) == 2 and all(len(b) == 2 for b in bars)  # ours and paper, 2 rows each
    assert fig.axes[3].get_xlim()[0] < -0.1  # a negative Pearson r stays visible
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "b"]


# ---------------------------------------------------------------- the real data (notebook 01)


@needs_data
def test_length_filter_summary_matches_the_original():
    summary = plots.length_filter_summary(_data_dir()).set_index("task")
    assert (summary.loc["sst", "train"], summary.loc["sst", "kept"]) == (8544, 8510)
    assert (summary.loc["sts", "train"], summary.loc["sts", "kept"]) == (6040, 5634)
    assert summary.loc["para", "removed"] > 0


@needs_data
def test_data_figures():
    d = _data_dir()
    fig = plots.class_distributions(d)
    assert len(fig.axes) == 3
    sst_bars = [c for c in fig.axes[0].containers if isinstance(c, BarContainer)]
    assert len(sst_bars) == 2 and all(len(b) == 5 for b in sst_bars)  # train and dev, 5 classes
    fig = plots.length_distributions(d)
    assert len(fig.axes) == 3
    assert all(any(np.allclose(line.get_xdata(), 250) for line in ax.get_lines()) for ax in fig.axes)
    fig = plots.quora_availability(d)
    assert len(fig.axes) == 2
    widths = [p.get_width() for p in fig.axes[0].patches]
    assert widths == [14137, 42194, 141506 - 56331]
