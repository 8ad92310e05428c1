"""What the panel shows, as plain functions: the live dev curve (``plots.dev_curves``), the progress through
the run's epochs, what a configuration is, the results table beside its paper row, an error box."""

from __future__ import annotations

import base64
import html
import io
import re
import threading

from mtlib import tasks as task_records

_PYPLOT = threading.Lock()  # pyplot is not thread-safe: the run thread draws while cells may plot


def dev_curve_png(history: list[dict], name: str) -> str:
    """The run's dev mean and per-task scores against examples seen, drawn by ``plots.dev_curves``; base64 PNG.

    The figure is closed right after it is rendered, so the inline backend never shows it in a cell."""
    import matplotlib.pyplot as plt

    from mtlib.results import plots

    with _PYPLOT:
        tasks = next((list(r["task_counts"]) for r in history if r.get("type") == "eval"), list(task_records.course()))
        fig = plots.dev_curves(history, metric=["mean", *tasks], labels=[name])
        try:
            fig.set_size_inches(11, 2.6)
            for ax in fig.axes:
                ax.tick_params(labelsize=8)
                ax.xaxis.label.set_size(8)
                legend = ax.get_legend()
                if legend is not None:
                    legend.remove()  # one run: the title says which
            fig.suptitle(f"{name}: dev scores after each epoch", fontsize=10)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=80)
        finally:
            plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def epoch_fraction(cfg, history: list[dict]) -> float:
    """How far the run is, in epochs of all its phases (steps count within an epoch when batches/epoch is set)."""
    phases = cfg.phase_configs()
    total = sum(p.epochs for p in phases) or 1
    evals = [r for r in history if r.get("type") == "eval"]
    done = float(len(evals))
    last = history[-1] if history else {}
    if last.get("type") == "train" and last.get("phase", 0) < len(phases):
        per_epoch = phases[last["phase"]].batches_per_epoch
        if per_epoch:
            done += min(last["step"] / per_epoch, 1.0)
    return min(done / total, 1.0)


def describe_html(target) -> str:
    """One grey line: what this configuration is (a paper row, or no paper row), its run dir and state."""
    row = target.row
    what = (
        f"this is row <code>{html.escape(row['id'])}</code> ({html.escape(row['label'])})"
        if row
        else "no paper row has this configuration"
    )
    return (
        f"<span style='color:gray'>{what}; run <code>{html.escape(target.cfg.name)}</code> in "
        f"<code>{html.escape(str(target.run_dir))}</code> ({target.state})</span>"
    )


def results_html(m: dict, row: dict | None) -> str:
    """This run's dev scores beside the paper row it matches ("no paper row" when none), with what produced them."""
    tasks = [t for t in m["dev"] if t not in ("mean", "mean_sts01")]
    cols = [*tasks, "mean"]
    head = "".join(f"<th>{c}</th>" for c in ["", *(task_records.get(t).metric_name for t in tasks), "mean"])
    rows = [(f"this run ({m['name']})", m["dev"])]
    if row and row.get("paper"):
        rows.append((f"paper: {row['label']}", row["paper"]))
    body = "".join(
        "<tr><td>"
        + html.escape(label)
        + "</td>"
        + "".join(f"<td>{d[c]:.3f}</td>" if c in d else "<td></td>" for c in cols)
        + "</tr>"
        for label, d in rows
    )
    if not (row and row.get("paper")):
        body += f"<tr><td colspan='{len(cols) + 1}' style='color:gray'>no paper row: the paper has no run with this configuration</td></tr>"
    used = ", ".join(f"{t} {m['data'][t]['train_used']:,}" for t in tasks if t in m.get("data", {}))
    caption = (
        f"backbone <code>{m['backbone']}</code>, train examples used: {used}; "
        f"{m['examples_seen']:,} seen, final dev: {m['dev_split']}; best epoch {m['best_epoch']}, "
        f"{m['train_seconds']} s. The paper: BERT-base on the full data."
    )
    return (
        f"<div style='overflow-x:auto'><table class='mtlib-results'><tr>{head}</tr>{body}</table></div>"
        f"<div style='color:gray;font-size:90%'>{caption}</div>"
    )


_WHERE = re.compile(r"^(invalid configuration: )?(overrides: )?(phases\[\d+\] \([^)]*\): )?")


def problems(text: str) -> list[str]:
    """A config error's problems, each once, without where the resolver found them: a panel value reaches
    the run's settings and every phase's, and would otherwise be reported once for each."""
    lines = [_WHERE.sub("", line).strip() for line in text.strip().splitlines()]
    return list(dict.fromkeys(line for line in lines if line))


def error_html(text: str) -> str:
    style = "color:#b00020;white-space:pre-wrap;overflow-wrap:break-word;word-break:normal;margin:0"
    return f"<pre style='{style}'>{html.escape(text.strip())}</pre>"
