"""``python -m mtlib cache``: what the outputs' cache holds, whether each entry can still be used, and pruning.

The cache (``<outputs>/cache/``) holds shared phase states (``phases/<key>.pt``, ``mtlib.train.shared_phases``)
and EDA-augmented training sets (``eda-<task>-<key>.jsonl``, ``mtlib.data.augment``). Runs check every entry
themselves before using it (digest, key, source run) and rebuild what fails; this command shows the same
verdicts up front and removes what no run could use: damaged or stale entries and the temporary files of
writes killed midway.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from mtlib.data.augment_cache import CacheDamaged, read_cache
from mtlib.rundir import CheckpointError, load_checkpoint
from mtlib.rundir.temporaries import TMP, abandoned
from mtlib.train.shared_phases import stale

ACTIONS = ("list", "verify", "prune")


@dataclass
class Entry:
    path: Path
    kind: str  # "phases", "eda" or "temporary"
    size: int
    age_s: float
    problem: str | None = None  # None: not checked; "": usable

    def line(self, root: Path) -> str:
        status = "" if self.problem is None else ("  ok" if not self.problem else f"  UNUSABLE: {self.problem}")
        return (
            f"{self.kind:9} {self.size / 2**20:8.1f} MB  {_age(self.age_s):>9}  {self.path.relative_to(root)}{status}"
        )


def entries(cache_dir: Path) -> list[Entry]:
    now, out = time.time(), []
    for path in sorted(cache_dir.rglob("*")) if cache_dir.is_dir() else []:
        if not path.is_file():
            continue
        kind = (
            "temporary"
            if TMP in path.name and path.name.startswith(".")
            else "phases"
            if path.parent.name == "phases" and path.suffix == ".pt"
            else "eda"
            if path.name.startswith("eda-") and path.suffix == ".jsonl"
            else None
        )
        if kind is not None:
            st = path.stat()
            out.append(Entry(path, kind, st.st_size, now - st.st_mtime))
    return out


def check(entry: Entry, outputs: Path) -> str:
    """ "" when a run could use the entry, else why not."""
    if entry.kind == "temporary":  # a write still under way is left alone
        return "left by a write that was killed midway" if abandoned(entry.path) else ""
    if entry.kind == "eda":
        try:
            read_cache(entry.path)
        except (CacheDamaged, OSError, ValueError, KeyError, TypeError) as err:
            return str(err)
        return ""
    try:
        state = load_checkpoint(entry.path, legacy=False)
    except CheckpointError as err:
        return str(err)
    if state.get("key") != entry.path.stem:
        return f"holds the state of other phases (key {state.get('key')!r})"
    return stale(state, outputs)


def cache_command(action: str, outputs: Path, everything: bool = False) -> list[str]:
    """The lines ``python -m mtlib cache ACTION`` prints."""
    cache_dir = outputs / "cache"
    found = entries(cache_dir)
    if not found:
        return [f"{cache_dir}: no cache entries"]
    lines, freed = [], 0
    for entry in found:
        if action != "list":
            entry.problem = check(entry, outputs)
        lines.append(entry.line(cache_dir))
        if action == "prune" and (everything or entry.problem):
            entry.path.unlink(missing_ok=True)
            freed += entry.size
            lines[-1] += "  -> removed"
    total = sum(e.size for e in found)
    bad = sum(1 for e in found if e.problem)
    summary = f"{len(found)} entries, {total / 2**20:.1f} MB in {cache_dir}"
    if action != "list":
        summary += f"; {bad} unusable"
    if action == "prune":
        summary += f"; removed {freed / 2**20:.1f} MB"
    elif bad:
        summary += " (python -m mtlib cache prune removes them; runs rebuild them anyway)"
    return lines + [summary]


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"
