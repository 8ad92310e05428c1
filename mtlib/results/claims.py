"""Verdicts on the paper's conclusions (``params/claims.yaml``) from finished runs.

Each claim is a hypothesis about two rows on one metric (``directional``, ``non_superiority`` with a margin δ,
or ``equivalence``; ``mtlib.experiments.claims_file``). The runs of both rows are paired by seed (pairing removes the
variance both rows share through their seed: data order, initialisation of the heads) and the per-seed
differences d_s = metric(left, s) - metric(right, s) are tested by ``mtlib.results.verdicts``: the paired t-test
(Student 1908; Dror et al. 2018, "The Hitchhiker's Guide to Testing Statistical Significance in NLP"), or a
sign-flip permutation test where a seed collapsed or the metric is discrete; Holm across the claims of the
table; the minimum detectable effect and the seeds needed at 80% power.

Verdicts: **holds**, **fails**, **below resolution** (the design could not have seen the claimed size),
**inconclusive** (see ``verdicts``). A collapsed run (a constant STS prediction) is scored r = 0 and counted
(``results.collapsed_tasks``), never dropped. The paper's own difference (one seed, its table) is given beside
ours; every verdict names the backbone, profile and training budget it rests on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mtlib import tasks as task_records
from mtlib.experiments.claims_file import Claim, is_score, load_claims
from mtlib.experiments.hypotheses import DIRECTIONAL, Hypothesis
from mtlib.experiments.rows import load_experiments
from mtlib.results.scores import collapsed_tasks, dev_scores, means, results_table, run_tasks
from mtlib.results.tables import dev_evals, first_reaching
from mtlib.results.verdicts import ALPHA, BELOW_RESOLUTION, FAILS, HOLDS, INCONCLUSIVE, VERDICTS, decide, evidence

__all__ = ["HOLDS", "FAILS", "INCONCLUSIVE", "BELOW_RESOLUTION", "VERDICTS", "claims_table", "verdict"]

COLUMNS = [
    "id",
    "claim",
    "kind",
    "compare",
    "metric",
    "margin",
    "backbone",
    "profile",
    "budget",
    "n_seeds",
    "n_collapsed",
    "difference",
    "sd",
    "method",
    "ci_low",
    "ci_high",
    "p_value",
    "family_size",
    "level_adjusted",
    "p_adjusted",
    "adj_low",
    "adj_high",
    "claimed_size",
    "mde",
    "seeds_needed",
    "verdict",
    "reason",
    "paper_difference",
    "paper_compare",
    "paper_says",
    "seeds",
    "collapsed_seeds",
]
METRIC_NAMES = {
    "mean": "dev mean",
    "mean_sts01": "dev mean (STS\u2192[0,1])",
    "examples_to_target": "examples to dev target",
    "dev_auc": "dev curve area (mean per epoch)",
}  # a task's: its metric_name (mtlib.tasks)
BACKBONE_NAMES = {"minilm-l6": "all-MiniLM-L6-v2"}  # the offline default (mtlib/model/backbones.py)
QUORA_TRAINED = ("minilm-l6", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")
BACKBONE_NOTE = (
    "all-MiniLM-L6-v2 was contrastively trained on Quora duplicate pairs (among a billion other pairs): its "
    "paraphrase (Quora) scores, and every dev mean that includes them, are optimistic, and differences between "
    "rows on them may be compressed."
)
SCORE_RESOLUTION = 1e-3  # dev scores are shown to three decimals: identical score differences are known to that


def metric_label(metric: str) -> str:
    return METRIC_NAMES.get(metric) or task_records.get(metric).metric_name


def verdict(
    differences: Sequence[float],
    sign: int = 1,
    *,
    kind: str = DIRECTIONAL,
    margin: float = math.nan,
    paper_difference: float = math.nan,
    collapsed: Sequence[bool] | None = None,
    discrete: bool = False,
    resolution: float = 0.0,
    alpha: float = ALPHA,
) -> dict:
    """The verdict on one claim about the paired differences, on its own (a family of one: no Holm across
    claims; ``claims_table`` decides a table's claims together). ``sign`` +1: left > right, -1: left < right
    (directional); ``kind``/``margin``: see ``verdicts.Hypothesis``. Returns the keys of ``verdicts.decide``
    (difference, ci_low, ci_high, n_seeds, verdict, reason, p_value, mde, seeds_needed, ...)."""
    hyp = Hypothesis(kind, sign, margin)
    ev = evidence(differences, hyp, collapsed, discrete, resolution)
    return decide([ev], [hyp.claimed_size(paper_difference)], alpha)[0]


def run_score(run: dict, metric: str) -> float:
    """A finished run's dev score on ``metric`` (a task, "mean" or "mean_sts01") from its metrics.json, or its
    ``dev_auc`` from its history; a collapsed Pearson task (a constant prediction, written as 0 or, by older
    runs, null) counts as r = 0."""
    if metric == "dev_auc":
        return dev_auc(run["run_dir"])
    dev = dev_scores(run)
    if metric not in ("mean", "mean_sts01"):
        return dev.get(metric, math.nan)
    plain, sts01 = means(dev, run_tasks(run))
    return plain if metric == "mean" else sts01


def _collapsed(run: dict, metric: str) -> bool:
    """Whether the run collapsed on a task this metric reads (every task for the means and the dev curves)."""
    tasks = collapsed_tasks(run)
    return bool(tasks) and (metric not in task_records.known() or metric in tasks)


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


def dev_auc(run_dir: str | Path) -> float:
    """The area under a run's final-phase dev curve per epoch: the mean of its per-epoch dev means (of the
    selection half's subsample). Two runs that end alike but one learns sooner differ here; where
    ``examples_to_target`` moves in whole epochs and depends on a target the pair sets, this is a continuous
    score of each run alone."""
    means_ = [r["mean"] for r in dev_evals(run_dir, final_phase=True) if r.get("mean") is not None]
    return float(np.mean(means_)) if means_ else math.nan


def eval_step(run_dir: str | Path) -> float:
    """The largest number of training examples between two dev evaluations of a run's final phase (from its
    start): the step examples_to_target moves in (one epoch), its resolution."""
    seen = [r["examples_seen"] for r in dev_evals(run_dir, final_phase=True)]
    return float(max(np.diff([0, *seen]), default=0))


def _by_seed(runs: list[dict]) -> dict[str, dict[int, dict]]:
    """{row id: {seed: run}}; with several runs of one row and seed (no profile filter) the newest counts."""
    out: dict[str, dict[int, dict]] = {}
    for run in sorted(runs, key=lambda m: _mtime(m.get("run_dir"))):
        out.setdefault(run["name"], {})[run["seed"]] = run
    return out


def _mtime(run_dir: str | None) -> float:
    path = Path(run_dir or "") / "metrics.json"
    return path.stat().st_mtime if path.is_file() else 0.0


def _pairs(claim: Claim, left: dict[int, dict], right: dict[int, dict]) -> dict:
    """The claim's paired seeds: their differences, which of them collapsed, the metric's resolution."""
    seeds = sorted(set(left) & set(right))
    diffs, collapsed, steps = [], [], [0.0]
    for s in seeds:
        collapsed.append(_collapsed(left[s], claim.metric) or _collapsed(right[s], claim.metric))
        if is_score(claim.metric):
            diffs.append(run_score(left[s], claim.metric) - run_score(right[s], claim.metric))
        else:
            a, b = examples_to_target(left[s]["run_dir"], right[s]["run_dir"], claim.fraction)
            diffs.append(math.nan if a is None or b is None else float(a - b))
            steps += [eval_step(left[s]["run_dir"]), eval_step(right[s]["run_dir"])]
    return {
        "seeds": seeds,
        "differences": diffs,
        "collapsed": collapsed,
        "resolution": SCORE_RESOLUTION if is_score(claim.metric) else max(steps),
        "runs": [left[s] for s in seeds] + [right[s] for s in seeds],
    }


def _paper_difference(claim: Claim, by_id: dict[str, dict]) -> float:
    if not is_score(claim.metric):
        return math.nan
    left, right = claim.paper_rows
    return _paper_value(by_id[left], claim.metric) - _paper_value(by_id[right], claim.metric)


def _backbone(runs: list[dict]) -> str:
    names = sorted({str(r.get("backbone") or "?") for r in runs})
    return ", ".join(BACKBONE_NAMES.get(n, n) for n in names) if runs else "\u2014"


def _budget(runs: list[dict]) -> str:
    seen = [r["examples_seen"] for r in runs if isinstance(r.get("examples_seen"), (int, float))]
    if not seen:
        return "\u2014"
    low, high = min(seen), max(seen)
    return f"{low:,.0f} examples/run" if low == high else f"{low:,.0f}\u2013{high:,.0f} examples/run"


def claims_table(
    out_dir: str | Path = "outputs/runs",
    profile: str | Path | None = None,
    claims: list[Claim] | None = None,
    experiments: list[dict] | None = None,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """One row per claim: its test on our runs paired by seed (one Holm family: the claims of this table), its
    power, its verdict, the paper's difference, and the backbone, profile and budget it rests on.

    Runs count as in ``results.results_table`` (with ``profile``, only the runs that profile produces).
    Columns: ``COLUMNS`` (``verdicts.decide``'s keys; ``seeds`` the paired seeds, ``collapsed_seeds`` those where
    a run of the pair collapsed). ``attrs``: profile, out_dir, results (the results table the runs came from,
    for its provenance line), alpha, notes (what to read the table with: the backbone's Quora training)."""
    rows = experiments if experiments is not None else load_experiments()
    claims = claims if claims is not None else load_claims(experiments=rows)
    by_id = {r["id"]: r for r in rows}
    results = results_table(out_dir, experiments=rows, profile=profile)
    runs = _by_seed(results.attrs["runs"])
    records, evidences, sizes = [], [], []
    for claim in claims:
        pairs = _pairs(claim, runs.get(claim.left, {}), runs.get(claim.right, {}))
        hyp = claim.hypothesis
        paper = _paper_difference(claim, by_id)
        evidences.append(
            evidence(
                pairs["differences"],
                hyp,
                pairs["collapsed"],
                discrete=not is_score(claim.metric),
                resolution=pairs["resolution"],
            )
        )
        sizes.append(hyp.claimed_size(paper))
        finite = [math.isfinite(d) for d in pairs["differences"]]
        records.append(
            {
                "id": claim.id,
                "claim": claim.claim,
                "kind": claim.kind,
                "compare": claim.compare,
                "metric": claim.metric,
                "margin": math.nan if claim.margin is None else claim.margin,
                "backbone": _backbone(pairs["runs"]),
                "profile": "any (no profile filter)" if profile is None else str(profile),
                "budget": _budget(pairs["runs"]),
                "paper_difference": paper,
                "paper_compare": None
                if claim.paper_rows == (claim.left, claim.right)
                else " - ".join(claim.paper_rows),
                "paper_says": claim.paper_says,
                "seeds": [s for s, ok in zip(pairs["seeds"], finite) if ok],
                "collapsed_seeds": [s for s, ok, c in zip(pairs["seeds"], finite, pairs["collapsed"]) if ok and c],
            }
        )
    for rec, decided in zip(records, decide(evidences, sizes, alpha)):
        rec.update(decided)
    table = pd.DataFrame(records, columns=COLUMNS)
    used = results.attrs["runs"]
    notes = [BACKBONE_NOTE] if any(str(r.get("backbone", "")).lower() in QUORA_TRAINED for r in used) else []
    table.attrs.update(
        {
            "profile": None if profile is None else str(profile),
            "out_dir": str(out_dir),
            "results": results,
            "alpha": alpha,
            "notes": notes,
        }
    )
    return table


# ---------------------------------------------------------------- display


def _number(value: float, metric: str, signed: bool = True) -> str:
    if value is None or not math.isfinite(value):
        return "\u2014"
    if is_score(metric):
        return f"{value:+.3f}" if signed else f"{value:.3f}"
    return f"{value:+,.0f}" if signed else f"{value:,.0f}"


def _interval(low: float, high: float, metric: str) -> str:
    if math.isnan(low) or math.isnan(high):
        return ""
    if math.isinf(low) or math.isinf(high):
        return "[no interval]"
    return f"[{_number(low, metric)}, {_number(high, metric)}]"


def _ours(rec: pd.Series) -> str:
    est = _number(rec["difference"], rec["metric"])
    if rec["n_seeds"] < 2:
        return est
    return f"{est} {_interval(rec['ci_low'], rec['ci_high'], rec['metric'])}"


def _adjusted(rec: pd.Series) -> str:
    if rec["n_seeds"] < 2:
        return "\u2014"
    level = f"{100 * (1 - rec['level_adjusted']):.4g}%"
    return f"{_interval(rec['adj_low'], rec['adj_high'], rec['metric'])} at {level}"


def _p(rec: pd.Series) -> str:
    if not math.isfinite(rec["p_value"]):
        return "\u2014"
    return f"{rec['p_value']:.2g} \u2192 {rec['p_adjusted']:.2g} (m = {rec['family_size']})"


def _seeds(rec: pd.Series) -> str:
    return f"{rec['n_seeds']} ({rec['n_collapsed']} collapsed)" if rec["n_collapsed"] else str(rec["n_seeds"])


def _hypothesis(rec: pd.Series) -> str:
    if rec["kind"] == DIRECTIONAL:
        return f"{rec['compare']}"
    return f"{rec['compare']}, \u03b4 = {_number(rec['margin'], rec['metric'], signed=False)}"


def _power(rec: pd.Series, key: str) -> str:
    value = rec[key]
    if key == "seeds_needed":
        return "\u2014" if not math.isfinite(value) else f"{value:.0f}"
    if math.isinf(value):
        return "\u221e"
    return _number(value, rec["metric"], signed=False)


def _paper(rec: pd.Series) -> str:
    if is_score(rec["metric"]) and math.isfinite(rec["paper_difference"]):
        against = f" ({rec['paper_compare']})" if isinstance(rec.get("paper_compare"), str) else ""
        return _number(rec["paper_difference"], rec["metric"]) + against
    return rec["paper_says"] or "\u2014"


def formatted_claims(table: pd.DataFrame) -> pd.DataFrame:
    """The claims table as display strings: the hypothesis, its test (95% and Holm-adjusted intervals, p), power,
    verdict, the paper's difference, and what the verdict rests on (backbone, profile, budget)."""
    rows = list(table.iterrows())
    out = pd.DataFrame(
        {
            "Claim": table["claim"],
            "Kind": table["kind"].str.replace("_", "-"),
            "Hypothesis": [_hypothesis(r) for _, r in rows],
            "Metric": [metric_label(m) for m in table["metric"]],
            "Seeds": [_seeds(r) for _, r in rows],
            "Ours: difference [95% CI]": [_ours(r) for _, r in rows],
            "Holm-adjusted interval": [_adjusted(r) for _, r in rows],
            "p \u2192 Holm p": [_p(r) for _, r in rows],
            "Test": table["method"].replace("", "\u2014"),
            "SD of differences": [_number(v, m, signed=False) for v, m in zip(table["sd"], table["metric"])],
            "Detectable (80%)": [_power(r, "mde") for _, r in rows],
            "Seeds needed": [_power(r, "seeds_needed") for _, r in rows],
            "Verdict": table["verdict"],
            "Why": table["reason"],
            "Paper: difference": [_paper(r) for _, r in rows],
            "Backbone \u00b7 profile \u00b7 budget": [
                f"{r['backbone']} \u00b7 {r['profile']} \u00b7 {r['budget']}" for _, r in rows
            ],
        }
    )
    out.index = table["id"]
    out.index.name = "id"
    return out


CLAIMS_NOTE = (
    "Difference = left row minus right row, paired by seed; [95% CI] = the unadjusted interval of the test "
    "(the paired t, or the sign-flip permutation test inverted where a seed collapsed, the metric is discrete or "
    "the differences are identical). Kinds: directional (a > b), non-superiority (a <= b: a is not better than b "
    "by the margin \u03b4 or more) and equivalence (a ~ b: within \u00b1\u03b4). All claims of the table form one "
    "family: their one-sided p-values are Holm-adjusted (m = family size) and a claim **holds** when its adjusted "
    "p < 0.025, i.e. its interval at the adjusted level lies in the claimed region; it **fails** when that "
    "interval lies wholly on the other side (of 0, above \u03b4, or outside \u00b1\u03b4); it is **below "
    "resolution** when neither and the smallest effect this design detects with 80% power at its adjusted level "
    "(Detectable, from the SD of the differences and the seeds) exceeds the claimed size (the paper's difference, "
    "or \u03b4); else **inconclusive**. Seeds needed: for the paired t-test to detect the claimed size (80% power, "
    "the same level). A collapsed seed (a constant STS prediction) is scored r = 0 and counted, never dropped. "
    "Dev scores are each run's report half of dev (its epochs were chosen on the other half). Dev curve area: the "
    "mean of a run's per-epoch dev means in its fine-tuning phase (higher is sooner). Examples to dev target: "
    "training examples seen in the fine-tuning phase until the dev mean first reached 95% "
    "of the weaker run's best (lower is sooner). The paper's difference is from its table (one seed; in brackets "
    "the rows it compared where ours is a matched control)."
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
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
    prof = table.attrs.get("profile")
    title = f"## The paper's claims{f' (profile {prof})' if prof else ''}"
    tested = int(table["family_size"].max()) if len(table) and table["family_size"].notna().any() else 0
    notes = [f"**Backbone.** {n}" for n in table.attrs.get("notes", [])]
    return "\n".join(
        [
            title,
            "",
            f"Computed from the runs of the results table ({summary}; claims from `params/claims.yaml`; "
            f"Holm family of {tested} tested claims).",
            "",
            *lines,
            "",
            CLAIMS_NOTE,
            "",
            *(f"{n}\n" for n in notes),
        ]
    )
