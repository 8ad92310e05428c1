"""What the panel shows, as plain functions of a run's history and metrics: the live dev curve, the results
table, an error box."""

from __future__ import annotations

import base64
import html
import io

from mtlib import TASKS


def dev_curve_png(figure, history: list[dict], title: str) -> str:
    """Draw the dev scores per task and their mean against examples seen on ``figure``; base64 PNG."""
    ax = figure.axes[0]
    ax.clear()
    evals = [r for r in history if r.get("type") == "eval"]
    x = [r["examples_seen"] for r in evals]
    for task in TASKS:
        if evals and task in evals[0]:
            ax.plot(x, [r[task] for r in evals], marker="o", lw=1, alpha=0.8, label=task)
    if evals:
        ax.plot(x, [r["mean"] for r in evals], marker="o", lw=2.5, color="black", label="mean")
    for i, cur in enumerate(evals):  # phase boundaries and names
        if i == 0 or cur.get("phase") != evals[i - 1].get("phase"):
            if i:
                ax.axvline((evals[i - 1]["examples_seen"] + cur["examples_seen"]) / 2, color="gray", ls=":")
            ax.annotate(cur.get("phase_name", ""), (cur["examples_seen"], 1), xycoords=("data", "axes fraction"),
                        xytext=(3, -11), textcoords="offset points", fontsize=8, color="gray")
    ax.set_xlabel("training examples seen")
    ax.set_ylabel("dev score (subsample)")
    ax.set_title(f"{title}: dev scores per epoch", fontsize=10)
    ax.margins(y=0.18)  # head room for the phase names
    if evals:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def results_html(m: dict, row: dict | None) -> str:
    """This run's dev scores beside the paper's row, with what produced them."""
    cols = [*TASKS, "mean"]
    head = "".join(f"<th>{c}</th>" for c in ["", "SST acc", "Quora acc", "STS corr", "mean"])
    rows = [("this run", m["dev"])]
    if row and row.get("paper"):
        rows.append((f"paper: {row['label']}", row["paper"]))
    body = "".join("<tr><td>" + html.escape(label) + "</td>"
                   + "".join(f"<td>{d[c]:.3f}</td>" if c in d else "<td></td>" for c in cols) + "</tr>"
                   for label, d in rows)
    used = ", ".join(f"{t} {m['data'][t]['train_used']:,}" for t in TASKS if t in m.get("data", {}))
    caption = (f"backbone <code>{m['backbone']}</code>, train examples used: {used}; "
               f"{m['examples_seen']:,} seen, final dev: {m['dev_split']}; best epoch {m['best_epoch']}, "
               f"{m['train_seconds']} s. The paper: BERT-base on the full data.")
    return (f"<table><tr>{head}</tr>{body}</table>"
            f"<div style='color:gray;font-size:90%'>{caption}</div>")


def error_html(text: str) -> str:
    return f"<pre style='color:#b00020;white-space:pre-wrap;margin:0'>{html.escape(text.strip())}</pre>"
