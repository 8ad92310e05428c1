"""The results table: our dev scores per experiments row (mean and 95% CI over seeds) beside the paper's.

Read back from ``metrics.json`` files (never from notebook outputs). Two "mean" formulas:

- ``mean`` (the 2023 course and the paper): plain mean of SST accuracy, Quora accuracy, STS Pearson r;
- ``mean_sts01`` (later course years): STS rescaled to [0, 1] first, mean of sst, para, (r + 1) / 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd


from mtlib import tasks as task_records
from mtlib.config.run_config import resolve_path
from mtlib.rundir import collect_metrics, read_config
from mtlib.experiments.rows import load_experiments, rows_for
from mtlib.results.intervals import mean_ci
from mtlib.experiments.resolve import resolve_config
from mtlib.rundir.atomic import atomic_write

MINILM_NOTE = (
    "MiniLM (all-MiniLM-L6-v2) was contrastively trained on Quora duplicate pairs among other data, "
    "so its Quora paraphrase scores are optimistic."
)
PAPER_NOTE = (
    "Paper: BERT-base (bert-base-uncased), the full Quora train set (141,506 rows), full dev sets, one seed (11711)."
)
MEAN_NOTE = (
    "Mean = plain mean of SST accuracy, Quora accuracy and STS Pearson r (the 2023 course formula the "
    "paper uses); Mean (STS\u2192[0,1]) = mean of SST, Quora and (r + 1)/2 (the later course formula)."
)
MEANS = ("mean", "mean_sts01")  # both course formulas, over the run's tasks (``means``)


def columns(tasks: Sequence[str]) -> list[str]:
    metrics = (*tasks, *MEANS)
    return [
        "id",
        "label",
        "notebook",
        "n_seeds",
        *(c for m in metrics for c in (m, f"{m}_ci")),
        *(f"paper_{t}" for t in tasks),
        "paper_mean",
        "paper_mean_sts01",
        "delta_mean",
    ]


def table_tasks(runs: Sequence[dict]) -> tuple[str, ...]:
    """The tasks a table shows: the course's, then any other task its runs were scored on (first seen first)."""
    out = list(task_records.course())
    for m in runs:
        out += [t for t in m.get("dev", {}) if t not in out and t not in MEANS]
    return tuple(out)


def run_tasks(run: dict) -> tuple[str, ...]:
    """The tasks a finished run was scored on (its metrics.json dev scores)."""
    return tuple(t for t in run.get("dev", {}) if t not in MEANS)


def means(scores: dict[str, float], tasks: Sequence[str]) -> tuple[float, float]:
    """(2023 mean, later mean) over ``tasks``: the plain mean of their scores; the mean with each Pearson r
    mapped to (r + 1) / 2 (the course's two formulas: SST, Quora and STS r, or STS (r + 1) / 2)."""
    values = [float(scores.get(t, math.nan)) for t in tasks]
    mapped = [(v + 1) / 2 if task_records.get(t).metric == "pearson" else v for t, v in zip(tasks, values)]
    return sum(values) / len(values), sum(mapped) / len(mapped)


def _run_config(run: dict) -> dict:
    return read_config(run.get("run_dir", "")) if run.get("run_dir") else {}


def _profile_filter(profile: str | Path) -> Callable[[dict, dict], bool]:
    """Keep a run iff its settings hash is what ``profile`` gives for its row and seed (on any machine and data
    folder: the run id also covers precision and data checksums, which the provenance line reports).

    The run's own out_dir is passed on: rows that start from another row's checkpoint (``init_from``)
    record that checkpoint's path, so their hash depends on where the runs live.
    """
    cache: dict[tuple, str | None] = {}

    def keep(run: dict, row: dict) -> bool:
        out_dir = _run_config(run).get("out_dir")
        key = (row["id"], run.get("seed"), out_dir)
        if key not in cache:
            try:
                extra = {"out_dir": out_dir} if out_dir else {}
                cache[key] = resolve_config(profile, row=row, seed=run.get("seed"), **extra).settings_hash()
            except (ValueError, KeyError, FileNotFoundError):
                cache[key] = None  # the row cannot be built under this profile: no run can match
        return cache[key] is not None and cache[key] == run.get("config_hash")

    return keep


def results_table(
    out_dir: str | Path = "outputs/runs",
    experiments: list[dict] | None = None,
    profile: str | Path | None = None,
    notebook: str | None = None,
) -> pd.DataFrame:
    """One row per experiments row (table order): our dev scores over seeds beside the paper's.

    Columns: id, label, notebook, n_seeds; for sst, para, sts, mean, mean_sts01 the mean over seeds and
    its 95% CI half-width (``<metric>_ci``, t distribution, NaN with one seed); paper_sst, paper_para,
    paper_sts, paper_mean, paper_mean_sts01; delta_mean = mean - paper_mean. A run counts for a row when
    its metrics.json ``name`` is the row id and, with ``profile``, its config hash is the one that profile
    gives for that row and seed (other profiles' runs in the same folder are left out). Rows without
    runs have NaN in our columns. ``notebook`` keeps only that notebook's rows (e.g. "02_baselines").
    ``table.attrs``: ``runs`` (the metrics used), ``profile``, ``out_dir``.
    """
    rows = experiments if experiments is not None else load_experiments()
    if notebook is not None:
        rows = rows_for(notebook, rows)
    runs = collect_metrics(resolve_path(out_dir)) if resolve_path(out_dir).is_dir() else []
    keep = _profile_filter(profile) if profile is not None else (lambda run, row: True)
    records, used = [], []
    matched = {row["id"]: [m for m in runs if m.get("name") == row["id"] and keep(m, row)] for row in rows}
    tasks = table_tasks([m for mine in matched.values() for m in mine])
    for row in rows:
        mine = matched[row["id"]]
        used += mine
        rec: dict[str, Any] = {
            "id": row["id"],
            "label": row["label"],
            "notebook": row["notebook"],
            "n_seeds": len(mine),
        }
        # a collapsed run (a constant STS prediction) counts with r = 0 (dev_scores), not dropped
        # beside the paper's numbers: all of the final dev rows, chosen and reported as the paper did
        per_seed = {t: [dev_scores(m, "full").get(t, math.nan) for m in mine] for t in tasks}
        both = [means(dev_scores(m, "full"), run_tasks(m)) for m in mine]  # each run's mean over its own tasks
        per_seed["mean"], per_seed["mean_sts01"] = [b[0] for b in both], [b[1] for b in both]
        for metric in (*tasks, *MEANS):
            rec[metric], rec[f"{metric}_ci"] = mean_ci(per_seed[metric])
        paper = row.get("paper", {})
        for t in (*tasks, "mean"):
            rec[f"paper_{t}"] = float(paper.get(t, math.nan))
        course = tuple(task_records.course())
        rec["paper_mean_sts01"] = means({t: rec[f"paper_{t}"] for t in course}, course)[1]
        rec["delta_mean"] = rec["mean"] - rec["paper_mean"]
        records.append(rec)
    table = pd.DataFrame(records, columns=columns(tasks)).astype({"n_seeds": int})
    table.attrs.update(
        {"runs": used, "profile": None if profile is None else str(profile), "out_dir": str(out_dir), "tasks": tasks}
    )
    return table


def _pearson(task: str) -> bool:
    return task not in MEANS and task_records.get(task).metric == "pearson"


def _dev(run: dict, part: str) -> dict:
    """metrics.json's ``dev`` (part "report": the report half where the run split dev, else all of it) or
    ``dev_full`` (part "full": every final dev row, where the run split dev; else ``dev``, which is that)."""
    if part not in ("report", "full"):
        raise ValueError(f"dev part {part!r}: expected 'report' or 'full'")
    return (run.get("dev_full") if part == "full" else None) or run.get("dev", {})


def collapsed_tasks(run: dict, part: str = "report") -> tuple[str, ...]:
    """The Pearson tasks of a finished run whose dev prediction was constant (a collapsed model): scored
    exactly r = 0 (``mtlib.data.metrics.pearson``; a fitted r is never exactly 0), or written as null (NaN) by
    runs from before constant predictions scored 0."""
    dev = _dev(run, part)
    return tuple(t for t, v in dev.items() if _pearson(t) and (v is None or not math.isfinite(float(v)) or v == 0.0))


def dev_scores(run: dict, part: str = "report") -> dict[str, float]:
    """A finished run's dev scores (metrics.json), a collapsed Pearson task (``collapsed_tasks``) as r = 0: the
    seed counts with the score its constant prediction earns instead of dropping out of means and pairs.
    ``part``: "report" (what verdicts compare: the half no epoch was chosen on) or "full" (all the final dev
    rows, the paper's way: what the table beside the paper's numbers shows)."""
    collapsed = collapsed_tasks(run, part)
    return {t: 0.0 if t in collapsed else math.nan if v is None else float(v) for t, v in _dev(run, part).items()}


def run_dirs(table: pd.DataFrame, rows: Sequence[str] | None = None) -> list[Path]:
    """The run directories behind a ``results_table`` (every seed), for ``rows`` (ids, in that order) or all."""
    runs = table.attrs.get("runs", [])
    ids = list(rows) if rows is not None else list(table["id"])
    return [Path(m["run_dir"]) for row in ids for m in runs if m.get("name") == row and m.get("run_dir")]


# ---------------------------------------------------------------- provenance and formatting


def _values(runs: list[dict], get: Callable[[dict], Any]) -> list:
    out = []
    for m in runs:
        try:
            v = get(m)
        except (KeyError, TypeError):
            continue
        if v is not None and v not in out:
            out.append(v)
    return out


def _span(values: list) -> str:
    nums = sorted(v for v in values if isinstance(v, (int, float)))
    if not nums:
        return "?"
    return f"{nums[0]:,}" if nums[0] == nums[-1] else f"{nums[0]:,}\u2013{nums[-1]:,}"


def provenance(table_runs: pd.DataFrame | Sequence[dict] | str | Path, profile: str | None = None) -> str:
    """The text printed under every results table: which backbone and how much data produced our numbers.

    ``table_runs``: a ``results_table`` (the runs behind the rows it still holds, so a table cut down to
    one notebook's rows describes those runs only), a list of metrics.json dicts, or a runs folder
    (every run there that ``profile`` produced; every run when ``profile`` is None).
    """
    if isinstance(table_runs, (str, Path)):
        table_runs = results_table(table_runs, profile=profile)
    if isinstance(table_runs, pd.DataFrame):
        ids = set(table_runs["id"]) if "id" in table_runs else set()
        runs = [m for m in table_runs.attrs.get("runs", []) if m.get("name") in ids]
        profile = profile or table_runs.attrs.get("profile")
        where = table_runs.attrs.get("out_dir")
    else:
        runs, where = list(table_runs), None
    prof = f" (profile {profile})" if profile else ""
    if not runs:
        return "\n".join(
            [
                f"No finished runs{prof}{f' in {where}' if where else ''} yet, so our columns are empty (NaN). "
                "Train the rows first: run notebooks 02\u201306 or "
                f"`python -m mtlib workbook --profile {profile or 'quick'}`.",
                PAPER_NOTE,
            ]
        )
    backbones = _values(runs, lambda m: m["backbone"])
    names = _values(runs, lambda m: m["name"])
    lines = [
        f"Ours{prof}: {len(runs)} finished run(s) of {len(names)} row(s); backbone {', '.join(map(str, backbones))}."
    ]
    tasks = [t for t in table_tasks(runs) if any(t in m.get("data", {}) for m in runs)]
    train = ", ".join(f"{t} {_span(_values(runs, lambda m, t=t: m['data'][t]['train_used']))}" for t in tasks)
    quora = "; ".join(map(str, _values(runs, lambda m: m["data"]["quora_train"]))) or "unknown"
    augmented = any(_values(runs, lambda m: any(m["data"][t].get("augmented", 0) for t in tasks if t in m["data"])))
    cuts = _values(runs, lambda m: m["data"].get("max_chars") or _run_config(m).get("max_chars"))
    cut = f"the {_span(cuts)}-character filter" if cuts else "the length filter"
    lines.append(
        f"Training data: Quora train {quora}; examples used per task: {train} "
        f"(after {cut}{', plus EDA augmentation in some rows' if augmented else ''})."
    )
    dev_parts = []
    for split in _values(runs, lambda m: m["dev_split"]):
        sel = [m for m in runs if m.get("dev_split") == split]
        field = "dev_subsample" if split == "subsample" else "dev"
        counts = ", ".join(f"{t} {_span(_values(sel, lambda m, t=t: m['data'][t][field]))}" for t in tasks)
        caps = _values(sel, lambda m: _run_config(m).get("final_dev_max"))
        what = {"full": "full dev sets", "subsample": "a fixed dev subsample"}.get(split, f"dev split {split}")
        cap = f", capped at {_span(caps)} examples per task" if split == "full" and caps else ""
        dev_parts.append(f"{what}{cap} ({counts})")
    halves = any(m.get("dev_half") == "report" for m in runs)
    lines.append(
        "Dev: "
        + "; ".join(dev_parts)
        + (
            ". Epochs were chosen on one half of each dev set (stratified, the same for every run) and the "
            "claims' verdicts compare the other half; the table beside the paper's numbers scores all of it."
            if halves
            else "."
        )
    )
    seeds = _values(runs, lambda m: m["seed"])
    per_row = [sum(m.get("name") == n for m in runs) for n in names]
    lines.append(
        f"Seeds: {', '.join(map(str, sorted(seeds)))} ({_span(per_row)} per row; "
        "\u00b1 = 95% CI half-width over seeds, t distribution)."
    )
    lines.append(speed_line(runs))
    lines.append(code_line(runs))
    if "minilm-l6" in backbones:
        lines.append(MINILM_NOTE)
    lines.append(PAPER_NOTE)
    return "\n".join(lines)


def code_version_name(version: dict | None) -> str:
    """``mtlib 0.1.0 706f78b1c2d3`` (``+dirty`` when the package's files differed from that commit)."""
    if not version:
        return "unrecorded (runs from before code versions were recorded)"
    commit = version.get("commit") or "(not a git checkout)"
    return f"mtlib {version.get('mtlib', '?')} {commit}{'+dirty' if version.get('dirty') else ''}"


def code_line(runs: Sequence[dict]) -> str:
    """Which code trained the runs; said loudly when they come from more than one version."""
    counts: dict[str, int] = {}
    for m in runs:
        name = code_version_name(m.get("code"))
        counts[name] = counts.get(name, 0) + 1
    if len(counts) == 1:
        return f"Code: {next(iter(counts))}."
    parts = ", ".join(f"{name} ({n} run{'s' if n > 1 else ''})" for name, n in counts.items())
    return (
        f"**Code: the runs under this table come from {len(counts)} code versions**: {parts}. Rows trained by "
        "different code may differ for that reason alone; delete the older runs to train them again."
    )


def speed_line(runs: Sequence[dict]) -> str:
    """How fast the runs trained (metrics.json ``speed``, every phase together), on which device and precision."""

    def rate(key: str) -> list:
        return _values(runs, lambda m: round(m["speed"]["all"][key]) if m["speed"]["all"].get(key) else None)

    where = "; ".join(f"{d} {p}" for d, p in dict.fromkeys((m.get("device"), m.get("precision")) for m in runs))
    if not rate("examples_per_s"):
        return f"Speed: not recorded by these runs (device and precision: {where})."
    return (
        f"Speed: training {_span(rate('examples_per_s'))} examples/s, {_span(rate('tokens_per_s'))} tokens/s "
        f"per run (all phases; {where})."
    )


def _fmt(value: float, ci: float = math.nan, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2014"
    text = f"{value:.{digits}f}"
    return text if ci is None or math.isnan(ci) else f"{text} \u00b1 {ci:.{digits}f}"


def _short(task: str) -> str:
    """A task's column name: its display name without a class-count suffix ("SST-5" -> "SST", "STS-B" -> "STS")."""
    return task_records.get(task).display.split("-")[0]


def formatted(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The table as display strings: ours as 'mean \u00b1 CI', the paper's numbers, the difference of means."""
    tasks = table.attrs.get("tasks") or tuple(task_records.course())
    ours = {_short(t): [_fmt(v, c, digits) for v, c in zip(table[t], table[f"{t}_ci"])] for t in tasks}
    paper = {
        f"Paper {_short(t)}": [_fmt(v, digits=digits) for v in table[f"paper_{t}"]]
        for t in tasks
        if t in task_records.course()
    }  # the paper has the course's tasks only
    out = pd.DataFrame(
        {
            "Row": table["label"],
            "Seeds": table["n_seeds"],
            **ours,
            "Mean": [_fmt(v, c, digits) for v, c in zip(table["mean"], table["mean_ci"])],
            "Mean (STS\u2192[0,1])": [_fmt(v, c, digits) for v, c in zip(table["mean_sts01"], table["mean_sts01_ci"])],
            **paper,
            "Paper mean": [_fmt(v, digits=digits) for v in table["paper_mean"]],
            "\u0394 mean": ["\u2014" if math.isnan(v) else f"{v:+.{digits}f}" for v in table["delta_mean"]],
        }
    )
    out.index = table["id"]
    out.index.name = "id"
    return out


def to_markdown(table: pd.DataFrame, provenance: str = "", digits: int = 3) -> str:
    """A GitHub markdown table of ``formatted(table)`` followed by the provenance text (no tabulate needed)."""
    shown = formatted(table, digits).reset_index()
    cells = [[str(v).replace("|", "\\|") for v in row] for row in shown.itertuples(index=False)]
    header = [str(c) for c in shown.columns]
    numeric = [i > 1 for i in range(len(header))]  # id and Row left, numbers right
    widths = [max(len(header[i]), *(len(r[i]) for r in cells)) if cells else len(header[i]) for i in range(len(header))]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if num else ":" + "-" * (w + 1) for w, num in zip(widths, numeric)) + "|"
    text = "\n".join([line(header), rule, *(line(r) for r in cells)])
    if provenance:
        text += "\n\n" + "\n".join(f"- {p}" for p in provenance.splitlines() if p.strip())
    return text + "\n"


def write_results_md(
    path: str | Path = "outputs/results.md",
    table: pd.DataFrame | None = None,
    out_dir: str | Path = "outputs/runs",
    profile: str | None = None,
    experiments: list[dict] | None = None,
    sections: Sequence[str] = (),
) -> Path:
    """Write the results table (built from ``out_dir``/``profile`` unless given) with its provenance, then
    each of ``sections`` (markdown, e.g. ``claims.claims_markdown(...)``: the paper's claims and our verdicts)."""
    if table is None:
        table = results_table(out_dir, experiments=experiments, profile=profile)
    profile = profile or table.attrs.get("profile")
    title = f"# Results{f' (profile {profile})' if profile else ''}\n\n"
    body = (
        title
        + "Dev scores, ours against the paper's (the study's results table, docs/original.md §12). "
        + MEAN_NOTE
        + "\n\n"
        + to_markdown(table, provenance(table, profile))
        + "".join(f"\n{text}" for text in sections)
    )
    path = resolve_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, body)
    return path
