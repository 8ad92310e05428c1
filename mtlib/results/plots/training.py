"""Training figures: dev curves, speed, task schedules and counts, gradient conflicts and surgery, compromise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.ticker
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from mtlib import tasks as task_records
from mtlib.methods import samplers as schedulers
from mtlib.results.plots._style import TASK_NAMES, X_LABELS, History, _color, _history, _rows, _smooth, _subplots
from mtlib.rundir import read_history, run_name


# ---------------------------------------------------------------- training curves


def _grouped(
    runs: History | Sequence[History], labels: Sequence[str] | Mapping[str, str] | None
) -> dict[str, list[list[dict]]]:
    """{label: [history, ...]}: runs sharing a label (by default their run name) are seeds of one curve."""
    if isinstance(runs, (str, Path)) or (isinstance(runs, Sequence) and runs and isinstance(runs[0], dict)):
        runs = [runs]
    items = [
        (run_name(r), read_history(r)) if isinstance(r, (str, Path)) else (f"run {i + 1}", list(r))
        for i, r in enumerate(runs)
    ]
    if isinstance(labels, Mapping):
        items = [(labels.get(name, name), h) for name, h in items]
    elif labels is not None:
        if len(labels) != len(items):
            raise ValueError(
                f"got {len(labels)} labels for {len(items)} runs (one label per run, equal labels = seeds of one curve)"
            )
        items = [(str(lab), h) for lab, (_, h) in zip(labels, items)]
    groups: dict[str, list[list[dict]]] = {}
    for name, h in items:
        groups.setdefault(name, []).append(h)
    return groups


def _curve(histories: list[list[dict]], metric: str, x: str) -> tuple[np.ndarray, ...]:
    """Mean x, mean / min / max y over seeds, aligned by evaluation index (seeds evaluate at the same steps)."""
    if x not in X_LABELS:
        raise ValueError(f"unknown x {x!r}; allowed: {', '.join(X_LABELS)}")
    evals = [_rows(h, "eval") for h in histories]
    n = max((len(e) for e in evals), default=0)
    xs = np.full((len(evals), n), np.nan)
    ys = np.full((len(evals), n), np.nan)
    for i, rows in enumerate(evals):
        for k, r in enumerate(rows):
            xs[i, k] = k + 1 if x == "epoch" else r[x]
            ys[i, k] = r[metric]
    if n == 0:
        return (np.array([]),) * 4
    return np.nanmean(xs, 0), np.nanmean(ys, 0), np.nanmin(ys, 0), np.nanmax(ys, 0)


def _draw_curves(ax, groups: dict[str, list[list[dict]]], metric: str, x: str) -> None:
    for i, (name, hists) in enumerate(groups.items()):
        xs, mean, low, high = _curve(hists, metric, x)
        color = sns.color_palette("tab10")[i % 10]
        seeds = f" ({len(hists)} seeds)" if len(hists) > 1 else ""
        ax.plot(xs, mean, marker="o", markersize=3, color=color, label=name + seeds)
        if len(hists) > 1:
            ax.fill_between(xs, low, high, color=color, alpha=0.2, linewidth=0)
    ax.set(xlabel=X_LABELS[x], ylabel=f"dev {TASK_NAMES.get(metric, metric)}")
    if x == "epoch":
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(fontsize=8)


def dev_curves(
    runs: History | Sequence[History],
    metric: str | Sequence[str] = "mean",
    x: str = "examples_seen",
    labels: Sequence[str] | Mapping[str, str] | None = None,
) -> Figure:
    """Dev scores after each epoch (history eval rows), one line per run; one axes per metric.

    Runs with the same label (by default the run name, i.e. the experiments row) are averaged as seeds,
    with a min..max band. ``labels``: one per run, or a mapping {run name: label}.
    ``x``: ``examples_seen``, ``epoch`` (counted across phases) or ``wall`` (seconds).
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    groups = _grouped(runs, labels)
    fig, axes = _subplots(1, len(metrics), figsize=(6 * len(metrics), 4), sharex=True)
    for ax, m in zip(axes, metrics):
        _draw_curves(ax, groups, m, x)
        ax.set_title(f"dev {TASK_NAMES.get(m, m)}")
    return fig


def speed_curves(
    run_dirs: History | Sequence[History], labels: Sequence[str] | Mapping[str, str] | None = None, metric: str = "mean"
) -> Figure:
    """Figure 10: dev score against training examples seen and against wall-clock time, side by side."""
    groups = _grouped(run_dirs, labels)
    fig, axes = _subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, x in zip(axes, ("examples_seen", "wall")):
        _draw_curves(ax, groups, metric, x)
    axes[0].set_title(f"dev {TASK_NAMES.get(metric, metric)} per example seen")
    axes[1].set_title(f"dev {TASK_NAMES.get(metric, metric)} per second of training")
    return fig


# ---------------------------------------------------------------- schedules and gradients


def task_ratios(sizes: Mapping[str, float], num_epochs: int) -> Figure:
    """Figure 6: PAL sampling probability of each task per epoch (p_t ~ N_t^alpha, alpha 1 -> 0.2)."""
    rows = schedulers.task_ratios(sizes, num_epochs)
    epochs = [r["epoch"] for r in rows]
    fig, (ax,) = _subplots(figsize=(7, 4))
    for i, task in enumerate(sizes):
        ax.plot(
            epochs,
            [r[task] for r in rows],
            marker="o",
            color=_color(task, i),
            label=f"{TASK_NAMES.get(task, task)} (N={sizes[task]:,.0f})",
        )
    ax.set_xticks(epochs, [f"{e}\n\u03b1={r['alpha']:.2f}" for e, r in zip(epochs, rows)], fontsize=8)
    ax.set(
        xlabel="epoch",
        ylabel="probability of drawing the task",
        ylim=(0, 1),
        title="PAL schedule: task ratios per epoch (paper Fig. 6)",
    )
    ax.legend()
    return fig


def observed_task_counts(history: History) -> Figure:
    """Batches drawn per task in each epoch (eval rows' task_counts): counts, and shares vs the schedule."""
    evals = _rows(_history(history), "eval")
    if not evals:
        raise ValueError("history has no eval rows (the run finished no epoch)")
    tasks = list(dict.fromkeys(t for r in evals for t in r.get("task_counts", {})))
    phases = {r.get("phase_name") for r in evals}
    ticks = [f"{r.get('phase_name', '')} {r['epoch']}" if len(phases) > 1 else str(r["epoch"]) for r in evals]
    idx = np.arange(len(evals))
    counts = np.array([[r.get("task_counts", {}).get(t, 0) for t in tasks] for r in evals], dtype=float)
    fig, (ax, ax_share) = _subplots(1, 2, figsize=(13, 4))
    bottom = np.zeros(len(evals))
    for j, task in enumerate(tasks):
        ax.bar(idx, counts[:, j], bottom=bottom, color=_color(task, j), label=TASK_NAMES[task])
        bottom += counts[:, j]
    ax.set(xticks=idx, ylabel="batches", title="Batches per task per epoch")
    ax.set_xticklabels(ticks, rotation=30 if len(phases) > 1 else 0, fontsize=8)
    ax.legend()
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    for j, task in enumerate(tasks):
        ax_share.plot(idx, shares[:, j], marker="o", color=_color(task, j), label=f"{TASK_NAMES[task]} observed")
        ax_share.plot(
            idx,
            [r.get("probabilities", {}).get(task, np.nan) for r in evals],
            linestyle="--",
            color=_color(task, j),
            label=f"{TASK_NAMES[task]} scheduled",
        )
    ax_share.set(xticks=idx, ylabel="share of batches", ylim=(0, 1), title="Observed share vs sampler probability")
    ax_share.set_xticklabels(ticks, rotation=30 if len(phases) > 1 else 0, fontsize=8)
    ax_share.legend(fontsize=7, ncol=2)
    return fig


def _grad_rows(history: History) -> list[dict]:
    rows = _rows(_history(history), "grad")
    if not rows:
        raise ValueError(
            "history has no grad rows: only runs with a gradient method (pcgrad, gradvac) "
            "or Gradient Compromise log gradient diagnostics"
        )
    return rows


def conflict_diagnostics(history: History, smooth: int | None = None) -> Figure:
    """Per-update cosines between task gradients (raw and smoothed), share of conflicting pairs, norms."""
    rows = _grad_rows(history)
    x = [r["examples_seen"] for r in rows]
    fig, (ax_cos, ax_share, ax_norm) = _subplots(1, 3, figsize=(16, 4), sharex=True)
    for i, pair in enumerate(rows[0]["pairs"]):
        values = [r["pairs"].get(pair, np.nan) for r in rows]
        color = _color(pair, i)
        ax_cos.plot(x, values, color=color, alpha=0.25, linewidth=0.8)
        ax_cos.plot(x, _smooth(values, smooth), color=color, linewidth=2, label=pair.replace("|", " / "))
    ax_cos.axhline(0, color="black", linewidth=0.8)
    ax_cos.set(ylabel="cosine similarity", title="Angles between task gradients")
    ax_cos.legend(fontsize=8)
    share = [r["conflict_share"] for r in rows]
    ax_share.plot(x, _smooth(share, smooth), color="#444444")
    ax_share.set(
        ylim=(-0.02, 1.02), ylabel="share of pairs with cos < 0", title=f"Conflicting pairs (mean {np.mean(share):.2f})"
    )
    for i, task in enumerate(rows[0]["norms"]):
        ax_norm.plot(
            x,
            _smooth([r["norms"][task] for r in rows], smooth),
            color=_color(task, i),
            label=TASK_NAMES.get(task, task),
        )
    ax_norm.set(yscale="log", ylabel="L2 norm (shared encoder)", title="Gradient norm per task")
    ax_norm.legend(fontsize=8)
    for ax in (ax_cos, ax_share, ax_norm):
        ax.set_xlabel(X_LABELS["examples_seen"])
    return fig


def _arrow(ax, vec, color: str, label: str | None = None, start=(0.0, 0.0), **kw: Any) -> None:
    end = (start[0] + vec[0], start[1] + vec[1])
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=color, linewidth=2, **kw))
    if label:
        ax.annotate(label, end, textcoords="offset points", xytext=(4, 4), color=color, fontsize=9)


def gradient_toy(
    g1: Sequence[float] = (1.0, 0.25), g2: Sequence[float] = (-0.55, 0.9), target: float | None = 0.3
) -> Figure:
    """Figure 7: two conflicting 2-D task gradients, their sum, PCGrad's projections (and GradVac's).

    Uses ``mtlib.methods.gradients`` itself; with ``target`` a third panel shows Gradient Vaccine pulling each
    gradient to cosine ``target`` with the other instead of PCGrad's 0.
    """
    import torch

    from mtlib.methods.gradients import GradVac, PCGrad

    grads = torch.tensor([list(g1), list(g2)], dtype=torch.float64)
    panels = [("sum (no surgery)", grads)]
    panels.append(("PCGrad: project out the conflict", PCGrad(2).project(grads.float()).double()))
    if target is not None:
        vac = GradVac(2, beta=0.0)
        vac.target = torch.tensor([[0.0, target], [target, 0.0]], dtype=torch.float64)
        panels.append((f"GradVac: raise cos to {target:g}", vac.project(grads.float()).double()))
    cos = float(grads[0] @ grads[1] / (grads[0].norm() * grads[1].norm()))
    course = list(task_records.course())  # the two toy gradients take the first two tasks' colours
    fig, axes = _subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4))
    points = torch.cat(
        [torch.zeros(1, 2, dtype=torch.float64), grads, *(torch.cat([p, p.sum(0, keepdim=True)]) for _, p in panels)]
    )
    low, high = points.min(0).values.tolist(), points.max(0).values.tolist()
    pad = 0.15 * max(h - lo for h, lo in zip(high, low))
    for ax, (title, g) in zip(axes, panels):
        if g is not grads:  # the originals, faint, with the removed component dotted
            for k in range(2):
                _arrow(ax, grads[k].tolist(), _color(course[k]), alpha=0.3)
                ax.plot([grads[k, 0], g[k, 0]], [grads[k, 1], g[k, 1]], ":", color=_color(course[k]))
        _arrow(ax, g[0].tolist(), _color(course[0]), "g1'" if g is not grads else "g1")
        _arrow(ax, g[1].tolist(), _color(course[1]), "g2'" if g is not grads else "g2")
        _arrow(ax, g.sum(0).tolist(), "black", "update", linestyle="--" if g is grads else "-")
        ax.set(xlim=(low[0] - pad, high[0] + pad), ylim=(low[1] - pad, high[1] + pad), aspect="equal", title=title)
        ax.axhline(0, color="#999999", linewidth=0.5)
        ax.axvline(0, color="#999999", linewidth=0.5)
    axes[0].text(0.02, 0.02, f"cos(g1, g2) = {cos:.2f}", transform=axes[0].transAxes, fontsize=9)
    fig.suptitle("Conflicting gradients and gradient surgery (paper Fig. 7)")
    return fig


def compromise_parts(history: History) -> Figure:
    """Figure 9: batches per task in each Gradient Compromise update, and the beta schedule of n_t^beta."""
    rows = [r for r in _grad_rows(history) if "counts" in r and "beta" in r]
    if not rows:
        raise ValueError("history's grad rows carry no counts/beta")
    tasks = list(rows[0]["counts"])
    idx = np.arange(1, len(rows) + 1)
    fig, (ax, ax_beta) = _subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=[2, 1])
    bottom = np.zeros(len(rows))
    for j, task in enumerate(tasks):
        counts = np.array([r["counts"].get(task, 0) for r in rows], dtype=float)
        ax.bar(
            idx,
            counts,
            bottom=bottom,
            width=1.0 if len(rows) > 60 else 0.8,
            color=_color(task, j),
            label=TASK_NAMES.get(task, task),
        )
        bottom += counts
    ax.set(ylabel="batches in the update", title="Gradient Compromise: task mix per update (paper Fig. 9)")
    ax.legend(fontsize=8, ncol=len(tasks))
    ax_beta.step(idx, [r["beta"] for r in rows], where="mid", color="#444444")
    ax_beta.set(xlabel="update", ylabel="\u03b2 (loss / n_t^\u03b2)", ylim=(0, 1.05))
    ax_beta.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    for k in range(1, len(rows)):  # epoch boundaries
        if rows[k]["epoch"] != rows[k - 1]["epoch"]:
            for a in (ax, ax_beta):
                a.axvline(k + 0.5, color="#999999", linestyle=":", linewidth=1)
    return fig
