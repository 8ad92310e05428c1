"""Verdicts on the paper's conclusions (``params/claims.yaml``) from finished runs.

For a claim ``left > right`` on a metric, the runs of both rows are paired by seed and the per-seed
differences d_s = metric(left, s) - metric(right, s) summarised by their mean and the 95% paired
t-interval mean ± t_{0.975}(n-1) · s_d / √n (Student 1908; the paired-sample t-interval, e.g. NIST/SEMATECH
e-Handbook of Statistical Methods §7.3.1; the recommended check for NLP comparisons over seeds in Dror et
al. 2018, "The Hitchhiker's Guide to Testing Statistical Significance in NLP"). Pairing by seed removes the
variance both rows share through their seed (data order, initialisation of the heads).

Verdict: **holds** when the interval lies wholly on the claimed side of 0, **fails** when wholly on the
other side, **inconclusive** when it contains 0 or fewer than two seeds could be paired. The paper's own
difference (one seed, its table) is given beside ours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mtlib import tasks as task_records
from mtlib.experiments.claims_file import Claim, is_score, load_claims
from mtlib.experiments.rows import load_experiments
from mtlib.results.intervals import mean_ci
from mtlib.results.scores import means, results_table, run_tasks
from mtlib.results.tables import dev_evals, first_reaching

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
COLUMNS = [
    "id",
    "claim",
    "compare",
    "metric",
    "n_seeds",
    "difference",
    "ci_low",
    "ci_high",
    "verdict",
    "reason",
    "paper_difference",
    "paper_says",
    "seeds",
]
METRIC_NAMES = {
    "mean": "dev mean",
    "mean_sts01": "dev mean (STS\u2192[0,1])",
    "examples_to_target": "examples to dev target",
}  # a task's: its metric_name (mtlib.tasks)


def metric_label(metric: str) -> str:
    return METRIC_NAMES.get(metric) or task_records.get(metric).metric_name


def verdict(differences: Sequence[float], sign: int) -> dict:
    """The verdict on a claim that the paired differences have sign ``sign`` (+1: left > right, -1: left < right).

    Returns difference (mean), ci_low, ci_high (NaN with fewer than two), n_seeds, verdict, reason."""
    d = np.asarray([x for x in differences if x is not None and math.isfinite(x)], dtype=float)
    mean, half = mean_ci(d)
    low, high = mean - half, mean + half
    out = {"n_seeds": len(d), "difference": mean, "ci_low": low, "ci_high": high}
    if len(d) == 0:
        return {**out, "verdict": INCONCLUSIVE, "reason": "no paired runs"}
    if len(d) < 2:
        return {**out, "verdict": INCONCLUSIVE, "reason": "one seed: no interval"}
    claimed_side = low > 0 if sign > 0 else high < 0
    other_side = high < 0 if sign > 0 else low > 0
    if claimed_side:
        return {**out, "verdict": HOLDS, "reason": "95% CI excludes 0, claimed side"}
    if other_side:
        return {**out, "verdict": FAILS, "reason": "95% CI excludes 0, other side"}
    return {**out, "verdict": INCONCLUSIVE, "reason": "95% CI contains 0"}


def run_score(run: dict, metric: str) -> float:
    """A finished run's dev score on ``metric`` (a task, "mean" or "mean_sts01") from its metrics.json."""
    # metrics.json writes NaN (a constant STS prediction's Pearson r) as null: that seed is not paired
    dev = {t: math.nan if v is None else float(v) for t, v in run["dev"].items()}
    if metric not in ("mean", "mean_sts01"):
        return dev.get(metric, math.nan)
    plain, sts01 = means(dev, run_tasks(run))
    return plain if metric == "mean" else sts01


def _paper_value(row: dict, metric: str) -> float:
    paper = row.get("paper") or {}
    if metric == "mean_sts01":
        course = tuple(task_records.course())
        return means({t: float(paper.get(t, math.nan)) for t in course}, course)[1]
    return float(paper.get(metric, math.nan))


def examples_to_target(left_dir: str | Path, right_dir: str | Path, fraction: float = 0.95) -> tuple:
    """(examples, examples) the two runs needed in their final (fine-tuning) phase until its dev mean first
    reached ``fraction`` of the weaker run's best dev mean in that phase (notebook 06's reach rule on a pair,
    without the examples of a frozen-encoder pretraining phase); None for a run that never got there."""
    evals = [dev_evals(left_dir, final_phase=True), dev_evals(right_dir, final_phase=True)]
    if not all(evals):
        return None, None
    target = fraction * min(max(r["mean"] for r in ev) for ev in evals)
    hits = [first_reaching(ev, target) for ev in evals]
    return tuple(h["examples_seen"] if h else None for h in hits)


def _by_seed(runs: list[dict]) -> dict[str, dict[int, dict]]:
    """{row id: {seed: run}}; with several runs of one row and seed (no profile filter) the newest counts."""
    out: dict[str, dict[int, dict]] = {}
    for run in sorted(runs, key=lambda m: _mtime(m.get("run_dir"))):
        out.setdefault(run["name"], {})[run["seed"]] = run
    return out


def _mtime(run_dir: str | None) -> float:
    path = Path(run_dir or "") / "metrics.json"
    return path.stat().st_mtime if path.is_file() else 0.0


def _differences(claim: Claim, left: dict[int, dict], right: dict[int, dict]) -> tuple[list[int], list[float]]:
    seeds = sorted(set(left) & set(right))
    diffs = []
    for s in seeds:
        if is_score(claim.metric):
            diffs.append(run_score(left[s], claim.metric) - run_score(right[s], claim.metric))
        else:
            a, b = examples_to_target(left[s]["run_dir"], right[s]["run_dir"], claim.fraction)
            diffs.append(math.nan if a is None or b is None else float(a - b))
    return seeds, diffs


def claims_table(
    out_dir: str | Path = "outputs/runs",
    profile: str | Path | None = None,
    claims: list[Claim] | None = None,
    experiments: list[dict] | None = None,
) -> pd.DataFrame:
    """One row per claim: our paired difference over seeds with its 95% CI and verdict, and the paper's.

    Runs count as in ``results.results_table`` (with ``profile``, only the runs that profile produces).
    Columns: ``COLUMNS``; ``seeds`` lists the paired seeds. ``attrs``: profile, out_dir, results (the
    results table the runs came from, for its provenance line)."""
    rows = experiments if experiments is not None else load_experiments()
    claims = claims if claims is not None else load_claims(experiments=rows)
    by_id = {r["id"]: r for r in rows}
    results = results_table(out_dir, experiments=rows, profile=profile)
    runs = _by_seed(results.attrs["runs"])
    records = []
    for claim in claims:
        seeds, diffs = _differences(claim, runs.get(claim.left, {}), runs.get(claim.right, {}))
        paired = [s for s, d in zip(seeds, diffs) if math.isfinite(d)]
        paper = (
            _paper_value(by_id[claim.left], claim.metric) - _paper_value(by_id[claim.right], claim.metric)
            if is_score(claim.metric)
            else math.nan
        )
        records.append(
            {
                "id": claim.id,
                "claim": claim.claim,
                "compare": claim.compare,
                "metric": claim.metric,
                **verdict(diffs, claim.sign),
                "paper_difference": paper,
                "paper_says": claim.paper_says,
                "seeds": paired,
            }
        )
    table = pd.DataFrame(records, columns=COLUMNS)
    table.attrs.update(
        {"profile": None if profile is None else str(profile), "out_dir": str(out_dir), "results": results}
    )
    return table


# ---------------------------------------------------------------- display


def _number(value: float, metric: str, signed: bool = True) -> str:
    if value is None or not math.isfinite(value):
        return "\u2014"
    if is_score(metric):
        return f"{value:+.3f}" if signed else f"{value:.3f}"
    return f"{value:+,.0f}" if signed else f"{value:,.0f}"


def _ours(rec: pd.Series) -> str:
    est = _number(rec["difference"], rec["metric"])
    if rec["n_seeds"] < 2:
        return est
    return f"{est} [{_number(rec['ci_low'], rec['metric'])}, {_number(rec['ci_high'], rec['metric'])}]"


def _paper(rec: pd.Series) -> str:
    if is_score(rec["metric"]) and math.isfinite(rec["paper_difference"]):
        return _number(rec["paper_difference"], rec["metric"])
    return rec["paper_says"] or "\u2014"


def formatted_claims(table: pd.DataFrame) -> pd.DataFrame:
    """The claims table as display strings: claim, comparison, metric, seeds, ours (95% CI), verdict, paper."""
    out = pd.DataFrame(
        {
            "Claim": table["claim"],
            "Comparison": table["compare"],
            "Metric": [metric_label(m) for m in table["metric"]],
            "Seeds": table["n_seeds"],
            "Ours: difference [95% CI]": [_ours(r) for _, r in table.iterrows()],
            "Verdict": table["verdict"],
            "Why": table["reason"],
            "Paper: difference": [_paper(r) for _, r in table.iterrows()],
        }
    )
    out.index = table["id"]
    out.index.name = "id"
    return out


CLAIMS_NOTE = (
    "Difference = left row minus right row of the comparison, paired by seed; [95% CI] = paired "
    "t-interval over seeds. A claim holds when the interval lies wholly on its side of 0, fails when "
    "wholly on the other side, and is inconclusive when it contains 0 or only one seed was paired. "
    "Examples to dev target: training examples seen in the fine-tuning phase until the dev mean first "
    "reached 95% of the weaker run's best (lower is sooner). The paper's difference is from its table (one seed)."
)


def claims_markdown(table: pd.DataFrame) -> str:
    """The claims table as a GitHub markdown section (heading, table, how to read it)."""
    shown = formatted_claims(table).reset_index()
    header = [str(c) for c in shown.columns]
    cells = [[str(v).replace("|", "\\|") for v in row] for row in shown.itertuples(index=False)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(":---" for _ in header) + "|",
        *("| " + " | ".join(r) + " |" for r in cells),
    ]
    counts = table["verdict"].value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in (HOLDS, FAILS, INCONCLUSIVE))
    prof = table.attrs.get("profile")
    title = f"## The paper's claims{f' (profile {prof})' if prof else ''}"
    return "\n".join(
        [
            title,
            "",
            f"Computed from the runs of the results table ({summary}; claims from `params/claims.yaml`).",
            "",
            *lines,
            "",
            CLAIMS_NOTE,
            "",
        ]
    )
