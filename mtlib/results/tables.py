"""Tables built from experiments rows and finished run directories (for the notebooks)."""

from __future__ import annotations

from pathlib import Path

from mtlib.rundir import read_history, read_metrics, run_name
from mtlib.experiments.rows import load_experiments, rows_for
from mtlib.results.labels import config_text


def rows_frame(notebook: str | None = None):
    """The experiments rows (of one notebook) as a table: id, label, the paper's numbers, the config delta in words."""
    import pandas as pd

    rows = rows_for(notebook) if notebook else load_experiments()
    return pd.DataFrame(
        [
            {
                "id": r["id"],
                "label": r["label"],
                **{f"paper_{k}": v for k, v in r["paper"].items()},
                "config": config_text(r["config"]),
            }
            for r in rows
        ]
    ).set_index("id")


def train_sizes(run_dir: str | Path) -> dict[str, int]:
    """Training examples per task of a finished run (what its PAL schedule was computed from)."""
    m = read_metrics(run_dir)
    return {t: v["train_used"] for t, v in m["data"].items() if isinstance(v, dict)}


def dev_evals(run_dir: str | Path, final_phase: bool = False) -> list[dict]:
    """The dev evaluations of a run's history (one per epoch, phases in order). ``final_phase``: only the last
    phase's, with ``examples_seen`` counted from that phase's start (the last evaluation of the phases before),
    so a run with a frozen-encoder pretraining phase is compared on its fine-tuning alone."""
    evals = read_history(run_dir, kind="eval")
    if not final_phase or not evals:
        return evals
    last = max(r.get("phase", 0) for r in evals)
    before = [r["examples_seen"] for r in evals if r.get("phase", 0) < last]
    start = max(before, default=0)
    return [{**r, "examples_seen": r["examples_seen"] - start} for r in evals if r.get("phase", 0) == last]


def first_reaching(evals: list[dict], target: float) -> dict | None:
    """The first dev evaluation whose mean is at least ``target`` (None: never reached)."""
    return next((r for r in evals if r["mean"] >= target), None)


def reach_table(run_dirs: list[str | Path], labels: dict[str, str] | None = None, fraction: float = 0.95):
    """How fast each run got there: examples seen and seconds until its dev mean first reached a common
    target (``fraction`` of the weakest run's best), plus its first and best dev mean. Tests speed-up claims.
    ``labels`` maps run names (row ids) to display names."""
    import pandas as pd

    evals = [dev_evals(d) for d in run_dirs]
    names = [run_name(d) for d in run_dirs]
    several = len(set(names)) < len(names)
    shown = [(labels or {}).get(n, n) + (f" ({Path(d).name})" if several else "") for n, d in zip(names, run_dirs)]
    bests = [max(r["mean"] for r in ev) for ev in evals if ev]
    target = fraction * min(bests) if bests else float("nan")
    out = []
    for label, ev in zip(shown, evals):
        hit = first_reaching(ev, target)
        out.append(
            {
                "run": label,
                "first_eval_mean": ev[0]["mean"] if ev else None,
                "best_mean": max(r["mean"] for r in ev) if ev else None,
                "target": target,
                "examples_to_target": hit["examples_seen"] if hit else None,
                "seconds_to_target": hit["wall"] if hit else None,
            }
        )
    return pd.DataFrame(out).set_index("run")


def parameter_table(run_dirs: list[str | Path]):
    """Parameter counts of each run's model (encoder, heads, PALs, trainable in the last phase)."""
    import pandas as pd

    out = {}
    for d in run_dirs:
        m = read_metrics(d)
        out[m["name"]] = m["params"]
    return pd.DataFrame(out).T.fillna(0).astype(int)


def find_run(run_dirs: list[str | Path], row_id: str) -> Path:
    """The first run directory of a row (``<row>-<hash>/seed<k>``) among ``run_dirs``."""
    for d in run_dirs:
        if run_name(d) == row_id:
            return Path(d)
    raise KeyError(f"no run of row {row_id!r} among {len(run_dirs)} run directories")
