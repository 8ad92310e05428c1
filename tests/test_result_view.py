"""The notebooks' results table: ours over the paper in one cell, so it fits the output area."""

import math

import pandas as pd

from mtlib.notebook.result_view import results_view


def _table():
    row = {"id": "base", "label": "BaseModel", "n_seeds": 2, "delta_mean": -0.1}
    for k, v in {"sst": 0.4, "para": 0.7, "sts": 0.5, "mean": 0.548}.items():
        row.update({k: v, f"{k}_ci": 0.01, f"paper_{k}": v + 0.1})
    empty = {**{k: math.nan for k in row}, "id": "pcgrad", "label": "PCGrad", "n_seeds": math.nan}
    empty.update({f"paper_{k}": 0.5 for k in ("sst", "para", "sts", "mean")})
    return pd.DataFrame([row, empty])


def test_each_score_cell_holds_ours_and_the_papers():
    html = results_view(_table())._repr_html_()
    assert html.count("<tr>") == 3 and html.count("<td") == 2 * 7
    assert "0.548 ± 0.010<br><span style='color:gray'>0.648</span>" in html
    assert "<b>pcgrad</b>" in html and "—" in html and "-0.100" in html


def test_the_frame_has_the_same_numbers():
    frame = results_view(_table()).frame
    assert list(frame.index) == ["base", "pcgrad"] and list(frame["seeds"]) == [2, 0]
    assert frame.loc["base", "mean"] == "0.548 ± 0.010" and frame.loc["base", "paper mean"] == "0.648"
