"""Batch runs: every row of a notebook (or rows by id) for every seed of a profile, parents first.

Finished runs are skipped, unfinished ones resume (``mtlib.train.trainer``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from mtlib.experiments.rows import get_row, load_experiments, parent_rows, rows_for
from mtlib.experiments.resolve import profile_seeds, resolve_config


def run_rows(
    notebook: str,
    profile: str,
    seeds: list[int] | None = None,
    only: list[str] | None = None,
    callback: Callable[[dict], None] | None = None,
    **overrides: Any,
) -> list[Path]:
    """Run every row of one notebook for every seed; finished runs are skipped, unfinished ones resume."""
    ids = [r["id"] for r in rows_for(notebook) if not only or r["id"] in only]
    return run_ids(ids, profile, seeds=seeds, callback=callback, **overrides)


def run_ids(
    ids: list[str],
    profile: str,
    seeds: list[int] | None = None,
    callback: Callable[[dict], None] | None = None,
    engine: str = "local",
    address: str | None = None,
    **overrides: Any,
) -> list[Path]:
    """Run rows by id (any notebook): e.g. the comparators a notebook plots; finished runs are skipped.

    ``engine="ray"``: the runs go to a Ray cluster (``address``, else a local one) as one sweep
    (``mtlib.runs.sweep``); a failed run raises after the others finished."""
    if engine != "local":
        return _sweep(ids, profile, seeds, engine, address, overrides)
    from mtlib.runs.progress import run_reported as run  # reports to `make workbook` when it asks

    seeds = seeds or profile_seeds(profile)
    experiments = load_experiments() if ids else []
    out = []
    for row_id in ids:
        row = get_row(row_id, experiments)
        for seed in seeds:
            for parent in parent_rows(row):  # e.g. PALs on the finished AdvancedModel
                run(
                    resolve_config(profile, row=get_row(parent, experiments), seed=seed, **overrides), callback=callback
                )
            out.append(run(resolve_config(profile, row=row, seed=seed, **overrides), callback=callback))
    return out


def _sweep(ids: list[str], profile: str, seeds, engine: str, address, overrides: dict) -> list[Path]:
    import sys

    from mtlib.runs.sweep import notebook_view, plan, run_sweep

    runs = plan(profile, ids, seeds, **overrides)
    view = notebook_view() if "ipykernel" in sys.modules else None  # a live table under the notebook cell
    sweep = run_sweep(runs, engine, address=address, on_update=view)
    if sweep.failed:
        raise RuntimeError("sweep: " + "; ".join(f"{r.key} {r.error}" for r in sweep.failed))
    wanted = {f"{i} seed{s}" for i in ids for s in (seeds or profile_seeds(profile))}
    return [Path(r.run_dir) for r in runs if r.key in wanted]
