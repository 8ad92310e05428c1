"""The results table as a notebook shows it: narrow enough for the output area (~900 px).

``results.formatted`` has twelve columns (ours and the paper's side by side) and runs past the output
area; here each score cell holds ours (± 95% CI) with the paper's number under it, and the row's label
wraps under its id. ``results.to_markdown`` keeps the full table for outputs/results.md.
"""

from __future__ import annotations

import html
import math

import pandas as pd

from mtlib import tasks as task_records


class ResultsView:
    """Displays as an HTML table; ``.frame`` is the same content as a DataFrame (for code)."""

    def __init__(self, table: pd.DataFrame, digits: int = 3):
        self.table, self.digits = table, digits

    def _num(self, value, ci=math.nan) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        text = f"{value:.{self.digits}f}"
        return text if ci is None or (isinstance(ci, float) and math.isnan(ci)) else f"{text} ± {ci:.{self.digits}f}"

    def metrics(self) -> list[tuple[str, str]]:
        """(column, heading) of each task the table shows (its attrs' tasks), then the mean."""
        tasks = self.table.attrs.get("tasks") or tuple(task_records.course())
        return [(k, task_records.get(k).metric_name) for k in tasks] + [("mean", "mean")]

    @property
    def frame(self) -> pd.DataFrame:
        t = self.table
        out = {"seeds": t["n_seeds"].fillna(0).astype(int).tolist()}
        for key, name in self.metrics():
            out[name] = [self._num(v, c) for v, c in zip(t[key], t[f"{key}_ci"])]
            if f"paper_{key}" in t:
                out[f"paper {name}"] = [self._num(v) for v in t[f"paper_{key}"]]
        out["Δ mean"] = ["—" if math.isnan(v) else f"{v:+.{self.digits}f}" for v in t["delta_mean"]]
        return pd.DataFrame(out, index=pd.Index(t["id"].tolist(), name="id"))

    def _repr_html_(self) -> str:
        t = self.table
        head = "".join(
            f"<th style='text-align:right'>{html.escape(n)}<br><span style='color:gray;font-weight:"
            f"normal'>paper</span></th>"
            for _, n in self.metrics()
        )
        rows = []
        for _, r in t.iterrows():
            cells = "".join(
                f"<td style='text-align:right;white-space:nowrap'>{self._num(r[k], r[f'{k}_ci'])}<br>"
                f"<span style='color:gray'>{self._num(r.get(f'paper_{k}'))}</span></td>"
                for k, _ in self.metrics()
            )
            seeds = 0 if pd.isna(r["n_seeds"]) else int(r["n_seeds"])
            delta = "—" if math.isnan(r["delta_mean"]) else f"{r['delta_mean']:+.{self.digits}f}"
            rows.append(
                f"<tr><td style='text-align:left;max-width:15em;white-space:normal'><b>{html.escape(r['id'])}"
                f"</b><br><span style='color:gray'>{html.escape(str(r['label']))}</span></td>"
                f"<td style='text-align:right'>{seeds}</td>{cells}"
                f"<td style='text-align:right'>{delta}</td></tr>"
            )
        return (
            f"<table style='font-size:90%;max-width:100%'><tr><th style='text-align:left'>row</th><th>seeds</th>"
            f"{head}<th>Δ mean</th></tr>{''.join(rows)}</table>"
        )


def results_view(table: pd.DataFrame, digits: int = 3) -> ResultsView:
    return ResultsView(table, digits)
