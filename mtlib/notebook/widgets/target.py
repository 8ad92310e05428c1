"""What a panel configuration is: the experiments row it matches (then it is that row's run), or a run of
its own named after what changed. Both found through the one resolver and ``run_dir_for``, so a config
that already ran (by "Train every row" or an earlier panel run) is shown, not trained again."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlib.config.run_config import RunConfig
from mtlib.experiments.rows import get_row, load_experiments, parent_rows
from mtlib.experiments.resolve import resolve_config
from mtlib.train.identity import run_dir_for

NAME_LIMIT = 100  # RunConfig's name rule


@dataclass(frozen=True)
class Target:
    cfg: RunConfig  # what runs: the row's own config when it matches one, else the panel's
    row: dict | None  # the paper row whose configuration this is; None: no paper row
    run_dir: Path
    parents: tuple[RunConfig, ...] = ()  # runs the row starts from (``init_from``), trained first if needed

    @property
    def finished(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()

    @property
    def state(self) -> str:
        if self.finished:
            return "already ran: Run shows it, no training"
        return "unfinished: Run resumes it" if self.run_dir.exists() else "new: Run trains it"


def find_target(profile: str, cfg: RunConfig, rows_out_dir: str, name: str, **fixed: Any) -> Target:
    """The row ``cfg`` is (compared as one run: a row's ``init_from`` parent inlined, as the panel builds it),
    else ``cfg`` renamed ``name`` under ``<rows_out_dir>/widgets``. ``fixed``: the panel's fixed overrides."""
    wanted = cfg.settings_hash()
    for row in load_experiments():
        try:
            inline = resolve_config(profile, row=row, seed=cfg.seed, inline_parent=True, **fixed)
        except (ValueError, KeyError, TypeError, FileNotFoundError):
            continue
        if inline.settings_hash() == wanted:  # the row's own run: it starts from its parent's best.pt
            own = resolve_config(profile, row=row, seed=cfg.seed, out_dir=rows_out_dir, **fixed)
            parents = tuple(
                resolve_config(profile, row=get_row(p), seed=cfg.seed, out_dir=rows_out_dir, **fixed)
                for p in parent_rows(row)
            )
            return Target(own, row, run_dir_for(own), parents)
    own = cfg.replace(name=name, out_dir=str(Path(rows_out_dir) / "widgets"))
    return Target(own, None, run_dir_for(own))


def change_name(start: str, changes: dict[str, Any]) -> str:
    """``gradvac+gradient_method=pcgrad``: the starting row and what the panel changed (a plain file name)."""
    parts = [f"{k}={_word(v)}" for k, v in changes.items()]
    name = "+".join([start, *parts]) if parts else start
    return name if len(name) <= NAME_LIMIT else f"{start}+{len(parts)}-changes"[:NAME_LIMIT]


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(value)).strip("_") or "none"
