"""What to train: the runs of rows x seeds of a profile, each row's parents (``init_from``) before it."""

from __future__ import annotations

from typing import Any

from mtlib.experiments.resolve import profile_seeds, resolve_config
from mtlib.experiments.rows import get_row, load_experiments, parent_rows
from mtlib.runs.executor import Run


def plan(profile: str, rows: list[str], seeds: list[int] | None = None, **overrides: Any) -> list[Run]:
    """The runs of ``rows`` x ``seeds`` (the profile's seeds by default) and their parents, parents first."""
    experiments = load_experiments()
    seeds = seeds or profile_seeds(profile)
    out: dict[str, Run] = {}

    def add(row_id: str, seed: int) -> str:
        key = f"{row_id} seed{seed}"
        if key not in out:
            row = get_row(row_id, experiments)
            parents = [add(p, seed) for p in parent_rows(row)]
            out[key] = Run(key, resolve_config(profile, row=row, seed=seed, **overrides), parents)
        return key

    for row_id in rows:
        for seed in seeds:
            add(row_id, seed)
    return list(out.values())


def merge(out: dict[str, Run], planned: list[Run]) -> None:
    """Add ``planned`` to ``out``: a run already there is kept once; the same key with other settings (another
    notebook's overrides) gets a key of its own, and its children follow it."""
    renamed = {}
    for r in planned:
        key = r.key
        while key in out and out[key].cfg != r.cfg:
            key += "'"
        renamed[r.key] = key
        if key not in out:
            out[key] = Run(key, r.cfg, [renamed[p] for p in r.parents])
