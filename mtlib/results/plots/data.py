"""Data-exploration figures (notebook 01): class balance, length filter, Quora train availability."""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mtlib import tasks as task_records
from mtlib import data as mdata
from mtlib.data.parse import QUORA_TRAIN_FULL_ROWS
from mtlib.results.plots._style import SST_CLASSES, TASK_COLORS, TASK_NAMES, _subplots


@functools.lru_cache(maxsize=32)
def _load(task: str, split: str, data_dir: str | None, quora_train: str = "head+extra") -> tuple:
    return tuple(mdata.load_split(task, split, data_dir, quora_train))


def _length(ex: mdata.Example) -> int:
    return sum(len(s) for s in ex.sentences)  # what filter_by_length measures


def _key(data_dir: str | Path | None) -> str | None:
    return None if data_dir is None else str(data_dir)


def class_distributions(data_dir: str | Path | None = None) -> Figure:
    """Figure 1 (SST-5 classes, train vs dev), the Quora label balance, and the STS score histogram."""
    d = _key(data_dir)
    fig, (ax_sst, ax_para, ax_sts) = _subplots(1, 3, figsize=(15, 4.2), width_ratios=[1.5, 1, 1.2])
    width = 0.4
    for k, (split, shade) in enumerate((("train", 1.0), ("dev", 0.45))):
        labels = [e.label for e in _load("sst", split, d)]
        counts = np.bincount(labels, minlength=5)
        bars = ax_sst.bar(
            np.arange(5) + (k - 0.5) * width,
            100 * counts / counts.sum(),
            width,
            color=TASK_COLORS["sst"],
            alpha=shade,
            label=f"{split} ({len(labels):,})",
        )
        ax_sst.bar_label(bars, labels=[f"{c:,}" for c in counts], fontsize=7)
    ax_sst.set(xticks=range(5), xticklabels=SST_CLASSES, ylabel="% of split", title="SST-5 classes (paper Fig. 1)")
    ax_sst.set_ylim(0, 1.3 * ax_sst.get_ylim()[1])  # room for the legend above the bars
    ax_sst.legend(loc="upper left", ncol=2)

    sources = {
        "train head": _load("para", "train", d, "head"),
        "train head+extra": _load("para", "train", d),
        "dev": _load("para", "dev", d),
    }
    pos = np.array([100 * np.mean([e.label for e in ex]) for ex in sources.values()])
    y = np.arange(len(sources))
    ax_para.barh(y, 100 - pos, color="#BBBBBB", label="not duplicate")
    ax_para.barh(y, pos, left=100 - pos, color=TASK_COLORS["para"], label="duplicate")
    for i, (p, ex) in enumerate(zip(pos, sources.values())):
        ax_para.text(99, i, f"{p:.1f}% of {len(ex):,}", ha="right", va="center", fontsize=8)
    ax_para.set(yticks=y, yticklabels=list(sources), xlabel="%", xlim=(0, 100), title="Quora balance")
    ax_para.invert_yaxis()
    ax_para.legend(loc="lower left", fontsize=8)

    for split, shade in (("train", 1.0), ("dev", 0.5)):
        scores = [e.label for e in _load("sts", split, d)]
        ax_sts.hist(
            scores,
            bins=np.arange(-0.25, 5.5, 0.5),
            density=True,
            histtype="step",
            linewidth=2,
            color=TASK_COLORS["sts"],
            alpha=shade,
            label=f"{split} ({len(scores):,})",
        )
    ax_sts.set(xlabel="similarity (0 unrelated .. 5 equivalent)", ylabel="density", title="STS-B scores")
    ax_sts.legend()
    return fig


def length_filter_summary(data_dir: str | Path | None = None, max_chars: int = 250) -> pd.DataFrame:
    """What the original's train-only length cut removes, per task (SST 8,544 -> 8,510, STS 6,040 -> 5,634)."""
    rows = []
    for task in task_records.course():
        ex = _load(task, "train", _key(data_dir))
        kept = len(mdata.filter_by_length(ex, max_chars))
        rows.append(
            {
                "task": task,
                "train": len(ex),
                "kept": kept,
                "removed": len(ex) - kept,
                "removed_%": round(100 * (len(ex) - kept) / len(ex), 2),
                "max_chars": max(map(_length, ex)),
            }
        )
    return pd.DataFrame(rows)


def length_distributions(data_dir: str | Path | None = None, max_chars: int = 250) -> Figure:
    """Character lengths of each task's train split (pairs: both sentences), with the cut marked."""
    fig, axes = _subplots(1, 3, figsize=(15, 4))
    summary = length_filter_summary(data_dir, max_chars).set_index("task")
    for ax, task in zip(axes, task_records.course()):
        lengths = np.array([_length(e) for e in _load(task, "train", _key(data_dir))])
        top = max(2 * max_chars, np.percentile(lengths, 99.8))
        ax.hist(np.minimum(lengths, top), bins=60, range=(0, top), color=TASK_COLORS[task], alpha=0.8)
        ax.axvline(max_chars, color="black", linestyle="--", linewidth=1)
        s = summary.loc[task]
        ax.text(
            0.97,
            0.95,
            f"<= {max_chars} chars: kept {int(s.kept):,} of {int(s.train):,}\nremoved "
            f"{int(s.removed):,} ({s['removed_%']:.1f}%)\nlongest {int(s.max_chars):,}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "#999999"},
        )
        ax.set(
            title=f"{TASK_NAMES[task]} train",
            xlabel="characters" + (" (s1 + s2)" if task != "sst" else ""),
            ylabel="examples",
        )
    return fig


def quora_availability(data_dir: str | Path | None = None) -> Figure:
    """Which rows of the course's 141,506-row Quora train set this project has, and their label balance."""
    d = _key(data_dir)
    full = QUORA_TRAIN_FULL_ROWS
    both = _load("para", "train", d)
    head = _load("para", "train", d, "head")
    fig, (ax, ax_pos) = _subplots(1, 2, figsize=(14, 3.2), width_ratios=[2.2, 1])
    if len(head) == len(both):  # the full quora-train.csv is present: subsets are not used
        parts = {"quora-train.csv": (len(both), TASK_COLORS["para"])}
    else:
        parts = {
            "head (first rows, unbiased)": (len(head), TASK_COLORS["para"]),
            "extra (sampled by class)": (len(both) - len(head), "#F5C76B"),
        }
    parts["not available"] = (max(full - len(both), 0), "#DDDDDD")
    left = 0
    for name, (n, color) in parts.items():
        ax.barh(0, n, left=left, color=color, edgecolor="white", label=f"{name}: {n:,}")
        ax.text(left + n / 2, 0, f"{n:,}\n({100 * n / full:.1f}%)", ha="center", va="center", fontsize=9)
        left += n
    ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.set(
        xlim=(0, max(full, left)),
        yticks=[],
        xlabel="rows of the course's quora-train.csv",
        title=f"Quora train rows available: {len(both):,} of {full:,}",
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, fontsize=8, frameon=False)
    extra = both[len(head) :]
    shares = {"head": head, "extra": extra, "head+extra": both, "dev": _load("para", "dev", d)}
    shares = {k: 100 * np.mean([e.label for e in v]) for k, v in shares.items() if len(v)}
    bars = ax_pos.bar(list(shares), list(shares.values()), color=TASK_COLORS["para"])
    ax_pos.bar_label(bars, fmt="%.1f%%", fontsize=8)
    ax_pos.set(ylabel="% duplicates", title="Positive share by source", ylim=(0, 50))
    return fig
