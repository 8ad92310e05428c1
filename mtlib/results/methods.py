"""Notebook 08's tables: every gradient method and loss weighting beside PCGrad / Vaccine, their cost and
conflicts, and the verdict on "exposure or surgery?" computed from the runs.

Two effects, each a directional claim (> 0) on the paired difference of dev means over seeds, the three decided
together as one Holm family (``mtlib.results.verdicts``; a collapsed seed counts with STS r = 0):

- **exposure**: ``sum_all`` (one batch of every task per update, gradients summed) minus ``pal_h1_pretrain``
  (the same recipe with one task per update, PAL-sampled): what seeing every task in every update adds;
- **surgery**: ``pcgrad`` and ``gradvac`` minus ``sum_all``: what changing the summed gradients adds on top.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from mtlib.rundir import read_history, read_metrics
from mtlib.experiments.rows import get_row, load_experiments, rows_for
from mtlib.results.intervals import mean_ci
from mtlib.results.scores import collapsed_tasks, dev_scores, means, run_tasks, table_tasks
from mtlib.experiments.hypotheses import Hypothesis
from mtlib.results.verdicts import HOLDS, decide, evidence

NOTEBOOK = "08_more_methods"
COMPARED = ("pcgrad", "gradvac")  # the paper's rows (notebook 03) shown beside the new ones
PAPERS = {  # gradient_method / loss_weighting -> the paper it comes from
    "sum": "control: plain sum (no surgery)",
    "pcgrad": "Yu et al. 2020, Gradient Surgery for Multi-Task Learning (NeurIPS)",
    "gradvac": "Wang et al. 2021, Gradient Vaccine (ICLR)",
    "upgrad": "Quinton & Rey 2024, Jacobian Descent for Multi-Objective Optimization (arXiv 2406.16232)",
    "mgda": "Désidéri 2012 (C. R. Math.); Sener & Koltun 2018, MTL as Multi-Objective Optimization (NeurIPS)",
    "cagrad": "Liu et al. 2021, Conflict-Averse Gradient Descent for Multi-task Learning (NeurIPS)",
    "nashmtl": "Navon et al. 2022, Multi-Task Learning as a Bargaining Game (ICML)",
    "imtlg": "Liu et al. 2021, Towards Impartial Multi-task Learning (ICLR)",
    "alignedmtl": "Senushkin et al. 2023, Independent Component Alignment for Multi-Task Learning (CVPR)",
    "dualproj": "Lopez-Paz & Ranzato 2017, Gradient Episodic Memory for Continual Learning (NeurIPS)",
    "rlw": "Lin et al. 2022, Reasonable Effectiveness of Random Weighting (TMLR)",
    "uncertainty": "Kendall et al. 2018, Multi-Task Learning Using Uncertainty to Weigh Losses (CVPR)",
    "dwa": "Liu et al. 2019, End-to-End Multi-Task Learning with Attention (CVPR)",
    "famo": "Liu et al. 2023, FAMO: Fast Adaptive Multitask Optimization (NeurIPS)",
}
EFFECTS = {  # effect -> (left row, right row): the paired difference left - right
    "exposure": ("sum_all", "pal_h1_pretrain"),
    "surgery (PCGrad)": ("pcgrad", "sum_all"),
    "surgery (Vaccine)": ("gradvac", "sum_all"),
}


def method_of(row: dict) -> tuple[str, str]:
    """(gradient_method, loss_weighting) of a row's last phase (what its fine-tuning does)."""
    last = {**row["config"], **(row["config"].get("phases") or [{}])[-1]}
    return last.get("gradient_method", "none"), last.get("loss_weighting", "none")


def method_rows(experiments: list[dict] | None = None) -> list[dict]:
    rows = experiments if experiments is not None else load_experiments()
    return [get_row(i, rows) for i in COMPARED] + rows_for(NOTEBOOK, rows)


def run_diagnostics(run_dir: str | Path) -> dict:
    """One run's last phase: the gradient method's share of training time (metrics.json ``speed``) and the
    mean conflict diagnostics over its updates (history ``grad`` records)."""
    metrics = read_metrics(run_dir)
    speed = metrics.get("speed") or {}
    phases = [k for k in speed if k != "all"]
    share = speed[phases[-1]].get("combine_share") if phases else None
    grads = read_history(run_dir, kind="grad")
    out = {
        "combine_share": math.nan if share is None else share,
        "updates_logged": len(grads),
        "conflict_share": _mean(r["conflict_share"] for r in grads),
    }
    for pair in grads[0]["pairs"] if grads else {}:
        out[f"cos {pair}"] = _mean(r["pairs"][pair] for r in grads)
    return out


def _dev_mean(run: dict) -> float:
    return means(dev_scores(run), run_tasks(run))[0]


def _mean(values) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else math.nan


def _runs(run_dirs: list[str | Path]) -> dict[str, dict[int, dict]]:
    """{row id: {seed: metrics.json (with run_dir)}} of the finished runs among ``run_dirs``."""
    out: dict[str, dict[int, dict]] = {}
    for d in run_dirs:
        if (Path(d) / "metrics.json").is_file():
            m = {**read_metrics(d), "run_dir": str(d)}
            out.setdefault(m["name"], {})[m["seed"]] = m
    return out


def methods_table(run_dirs: list[str | Path]) -> pd.DataFrame:
    """One row per method row (PCGrad, Vaccine, then notebook 08's) from the runs the notebook trained: dev
    scores over seeds (mean and 95% CI half-width per task and for the mean), the gradient method, loss
    weighting and paper, the combination share and conflict diagnostics averaged over its runs.
    ``attrs["runs"]``: the metrics used (for ``results.provenance``)."""
    runs, records, used = _runs(run_dirs), [], []
    for row in method_rows():
        mine = list(runs.get(row["id"], {}).values())
        used += mine
        gm, lw = method_of(row)
        rec = {
            "id": row["id"],
            "gradient_method": gm,
            "loss_weighting": lw,
            "n_seeds": len(mine),
            "beyond_paper": bool(row.get("beyond_paper")),
            "method_paper": PAPERS.get(lw if lw != "none" else gm, ""),
        }
        scores = {t: [dev_scores(m).get(t, math.nan) for m in mine] for t in table_tasks(mine)}
        scores["mean"] = [_dev_mean(m) for m in mine]
        for metric, values in scores.items():
            rec[metric], rec[f"{metric}_ci"] = mean_ci(values) if values else (math.nan, math.nan)
        diags = [run_diagnostics(m["run_dir"]) for m in mine]
        rec.update({k: _mean(d.get(k, math.nan) for d in diags) for k in sorted({k for d in diags for k in d})})
        records.append(rec)
    table = pd.DataFrame(records)
    for column in ("combine_share", "conflict_share"):  # no runs yet: the columns still exist
        if column not in table:
            table[column] = math.nan
    table.attrs["runs"] = used
    return table


def run_dirs_of(table: pd.DataFrame, ids: list[str]) -> list[Path]:
    """The run directories behind ``methods_table`` rows ``ids`` (every seed, in that order)."""
    return [Path(m["run_dir"]) for i in ids for m in table.attrs["runs"] if m["name"] == i]


def effects_table(run_dirs: list[str | Path]) -> pd.DataFrame:
    """Each effect of ``EFFECTS``: the paired difference of the dev mean over seeds, its 95% and Holm-adjusted
    intervals and verdict (``verdicts.decide``'s columns; the three effects are one family)."""
    runs, records, evidences = _runs(run_dirs), [], []
    for effect, (left, right) in EFFECTS.items():
        a, b = runs.get(left, {}), runs.get(right, {})
        seeds = sorted(set(a) & set(b))
        diffs = [_dev_mean(a[s]) - _dev_mean(b[s]) for s in seeds]
        collapsed = [bool(collapsed_tasks(a[s]) or collapsed_tasks(b[s])) for s in seeds]
        evidences.append(evidence(diffs, Hypothesis(), collapsed))
        records.append({"effect": effect, "compare": f"{left} - {right}", "seeds": seeds})
    for rec, decided in zip(records, decide(evidences)):
        rec.update(decided)
    return pd.DataFrame(records).set_index("effect")


def exposure_or_surgery(effects: pd.DataFrame) -> str:
    """The answer, in one sentence, from ``effects_table``: a CI decides where two or more seeds allow it;
    with one seed the point estimates are named as such, never as a verdict."""
    if effects["n_seeds"].min() == 0:
        return "not yet answerable: run sum_all, pal_h1_pretrain, pcgrad and gradvac (same profile and seeds)"
    exposure = effects.loc["exposure"]
    surgery = effects.drop(index="exposure")
    if (surgery["verdict"] == HOLDS).any():
        return "surgery: PCGrad or Vaccine beats the plain sum of the same batches (Holm-adjusted interval above 0)"
    if exposure["verdict"] == HOLDS:
        return (
            "exposure, not surgery: every task in every update beats single-task steps (Holm-adjusted interval "
            "above 0) and neither PCGrad nor Vaccine beats the plain sum of the same batches"
        )
    best = surgery["difference"].max()
    point = "exposure" if exposure["difference"] > max(best, 0.0) else "surgery" if best > 0 else "neither"
    seeds = int(effects["n_seeds"].min())
    why = "one seed: no interval" if seeds < 2 else "no Holm-adjusted interval clears 0"
    return (
        f"inconclusive ({why}); the point estimates favour {point}: exposure {exposure['difference']:+.3f}, "
        f"surgery {', '.join(f'{k[9:-1]} {v:+.3f}' for k, v in surgery['difference'].items())} (dev mean)"
    )
