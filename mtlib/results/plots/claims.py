"""The forest plot of the paper's claims: our paired difference per claim with its 95% CI and its Holm-adjusted
interval, the margin of a "does not help" / equivalence claim, the paper's difference beside it.

``table`` is ``mtlib.results.claims.claims_table(...)``. Score claims and speed claims (examples to a dev
target) have different units, so each group gets its own panel, stacked, with its own x axis.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mtlib.results.plots._style import _subplots

# Okabe-Ito, as the task colours: the four verdicts stay apart in colour-blind vision.
VERDICT_COLORS = {"holds": "#009E73", "fails": "#D55E00", "inconclusive": "#777777", "below resolution": "#CC79A7"}
MARGIN_COLOR = "#0072B2"
UNITS = {"examples_to_target": "difference in training examples to the dev target (left \u2212 right; < 0 = sooner)"}
SCORE_UNIT = "difference in dev score (left \u2212 right row)"
METRIC_SHORT = {
    "sst": "SST",
    "para": "Quora",
    "sts": "STS",
    "mean": "mean",
    "mean_sts01": "mean01",
    "examples_to_target": "examples",
}


def _label(rec: pd.Series) -> str:
    text = textwrap.fill(rec["claim"], 52)
    return f"{text}\n{rec['compare']} ({METRIC_SHORT.get(rec['metric'], rec['metric'])})"


def _panel(ax, part: pd.DataFrame, unit: str) -> None:
    y = np.arange(len(part))
    ax.axvline(0, color="#333333", linewidth=0.8)
    for i, (_, rec) in enumerate(part.iterrows()):
        color = VERDICT_COLORS.get(rec["verdict"], "#777777")
        est = rec["difference"]
        if math.isfinite(est):
            adj_low, adj_high = rec.get("adj_low", math.nan), rec.get("adj_high", math.nan)
            if math.isfinite(adj_low) and math.isfinite(adj_high):  # Holm-adjusted: thin, wider
                ax.plot([adj_low, adj_high], [i, i], color=color, linewidth=0.9, alpha=0.8, solid_capstyle="butt")
            low, high = rec["ci_low"], rec["ci_high"]
            if math.isfinite(low) and math.isfinite(high):
                ax.plot([low, high], [i, i], color=color, linewidth=2.2, solid_capstyle="butt")
            elif math.isinf(low) or math.isinf(high):  # the sign-flip test with too few seeds: no finite interval
                ax.text(est, i - 0.3, "no interval: too few seeds", ha="center", fontsize=7, color=color)
            ax.plot(est, i, "o", color=color, markersize=7)
        else:
            ax.text(0, i, "  no paired runs", va="center", fontsize=8, color="#777777")
        margin = rec.get("margin", math.nan)
        if margin is not None and math.isfinite(margin):  # the claim's δ: below it (non-superiority), inside ±δ
            edges = [margin] if rec.get("kind") == "non_superiority" else [-margin, margin]
            for edge in edges:
                ax.plot([edge, edge], [i - 0.35, i + 0.35], color=MARGIN_COLOR, linewidth=1.2, linestyle=":")
        paper = rec["paper_difference"]
        if math.isfinite(paper):
            ax.plot(paper, i, "D", markerfacecolor="white", markeredgecolor="#444444", markersize=6)
    ax.set_yticks(y, [_label(r) for _, r in part.iterrows()], fontsize=8)
    ax.set_ylim(len(part) - 0.5, -0.7)
    ax.set_xlabel(unit, fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="y", visible=False)


def claims_forest(table: pd.DataFrame) -> Figure:
    """One line per claim: our mean paired difference (dot), 95% CI (thick bar; none with one seed) and
    Holm-adjusted interval (thin), coloured by the verdict; the margin δ of a margin claim (blue dotted ticks);
    the paper's difference (white diamond). The comparison under each claim says where it claims the difference
    lies ("a > b": right of 0; "a < b": left; "a <= b": left of δ; "a ~ b": inside ±δ)."""
    groups = [
        (UNITS.get(m, SCORE_UNIT), part)
        for m, part in [("score", table[~table["metric"].isin(list(UNITS))])]
        + [(m, table[table["metric"] == m]) for m in UNITS]
    ]
    groups = [(unit, part) for unit, part in groups if len(part)]
    if not groups:
        fig, axes = _subplots(1, 1, figsize=(9, 1.2))
        axes[0].axis("off")
        axes[0].text(0.5, 0.5, "no claims", ha="center", va="center")
        return fig
    heights = [len(part) + 1.2 for _, part in groups]
    fig, axes = _subplots(
        len(groups), 1, figsize=(10, 0.5 * sum(heights) + 1.2), gridspec_kw={"height_ratios": heights}
    )
    for ax, (unit, part) in zip(axes, groups):
        _panel(ax, part, unit)
    handles = [
        Line2D([], [], color=c, marker="o", linewidth=2.2, label=f"ours: {v}") for v, c in VERDICT_COLORS.items()
    ]
    handles.append(Line2D([], [], color="#444444", linewidth=0.9, label="Holm-adjusted"))
    handles.append(Line2D([], [], color=MARGIN_COLOR, linestyle=":", label="margin \u03b4"))
    handles.append(Line2D([], [], color="#444444", marker="D", markerfacecolor="white", linestyle="", label="paper"))
    prof = table.attrs.get("profile")
    axes[0].legend(handles=handles, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False)
    axes[0].set_title(
        f"The paper's claims: paired differences over seeds, 95% CI and Holm-adjusted"
        f"{f' (profile {prof})' if prof else ''}",
        fontsize=11,
        pad=34,
    )
    return fig
