"""Experiments, run directories and the papermill batch driver.

``params/experiments.yaml`` lists every row of the paper's results table: its config delta, its
notebook, the paper's numbers. A row's config = profile settings, then the row's delta, then the
profile's per-phase overrides, then the caller's overrides. Runs live in
``outputs/runs/<row>-<confighash>/seed<k>/``; a finished run is skipped, an unfinished one resumes.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import yaml

from mtlib.config import PARAMS_DIR, REPO_ROOT, RunConfig, load_profile, profile_seed_list


def load_experiments(path: str | Path | None = None) -> list[dict]:
    path = Path(path) if path else PARAMS_DIR / "experiments.yaml"
    data = yaml.safe_load(path.read_text())
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a top-level key 'rows' holding a list")
    seen = set()
    for i, row in enumerate(rows):
        for key in ("id", "label", "notebook", "paper", "config"):
            if key not in row:
                raise ValueError(f"{path}: rows[{i}] lacks key {key!r}")
        if row["id"] in seen:
            raise ValueError(f"{path}: rows[{i}] repeats id {row['id']!r}")
        seen.add(row["id"])
    return rows


def get_row(row_id: str, experiments: list[dict] | None = None) -> dict:
    rows = experiments if experiments is not None else load_experiments()
    for row in rows:
        if row["id"] == row_id:
            return row
    raise KeyError(f"no row {row_id!r} in params/experiments.yaml; rows: {', '.join(r['id'] for r in rows)}")


def rows_for(notebook: str, experiments: list[dict] | None = None) -> list[dict]:
    rows = experiments if experiments is not None else load_experiments()
    return [r for r in rows if r["notebook"] == notebook]


def _is_profile(arg: str | Path) -> bool:
    p = Path(arg)
    return not p.suffix or p.parent.name == "profiles"


def config_for(config: str | Path | dict, row: str | dict | None = None, seed: int | None = None,
               **overrides: Any) -> RunConfig:
    """A RunConfig from a profile name/path (or a plain run-config YAML, or a dict) plus an experiments row."""
    if isinstance(config, dict):
        base = dict(config)
    elif _is_profile(config):
        base = load_profile(config)
    else:
        base = yaml.safe_load(Path(config).read_text()) or {}
    phase_overrides = base.pop("phase_overrides", {}) or {}
    seeds = base.pop("seeds", None)
    base.pop("description", None)
    init_from = None
    if row is not None:
        row = get_row(row) if isinstance(row, str) else row
        base.update(row["config"])
        base["name"] = row["id"]
        init_from = row.get("init_from")
    if base.get("phases"):
        base["phases"] = [{**ph, **phase_overrides.get(ph.get("name", ""), {})} for ph in base["phases"]]
    base.update(overrides)
    if seed is not None:
        base["seed"] = seed
    elif "seed" not in base and seeds:
        base["seed"] = seeds[0]
    if init_from and "init_checkpoint" not in overrides:
        # start from the finished run of another row: same profile, seed and overrides (as run_rows trains it)
        parent = config_for(config, row=init_from, seed=base.get("seed"), **overrides)
        base["init_checkpoint"] = str(parent.run_dir() / "best.pt")
    return RunConfig.from_dict(base, source=str(config) if not isinstance(config, dict) else "config")


def parent_rows(row: dict) -> list[str]:
    return [row["init_from"]] if row.get("init_from") else []


def profile_seeds(profile: str | Path) -> list[int]:
    data = load_profile(profile)
    return list(profile_seed_list(data))


def run_rows(notebook: str, profile: str, seeds: list[int] | None = None, only: list[str] | None = None,
             callback: Callable[[dict], None] | None = None, **overrides: Any) -> list[Path]:
    """Run every row of one notebook for every seed; finished runs are skipped, unfinished ones resume."""
    ids = [r["id"] for r in rows_for(notebook) if not only or r["id"] in only]
    return run_ids(ids, profile, seeds=seeds, callback=callback, **overrides)


def run_ids(ids: list[str], profile: str, seeds: list[int] | None = None,
            callback: Callable[[dict], None] | None = None, **overrides: Any) -> list[Path]:
    """Run rows by id (any notebook): e.g. the comparators a notebook plots; finished runs are skipped."""
    from mtlib.train import run

    seeds = seeds or profile_seeds(profile)
    experiments = load_experiments() if ids else []
    out = []
    for row_id in ids:
        row = get_row(row_id, experiments)
        for seed in seeds:
            for parent in parent_rows(row):  # e.g. PALs on the finished AdvancedModel
                run(config_for(profile, row=get_row(parent, experiments), seed=seed, **overrides), callback=callback)
            out.append(run(config_for(profile, row=row, seed=seed, **overrides), callback=callback))
    return out


def rows_frame(notebook: str | None = None):
    """The experiments rows (of one notebook) as a table: id, label, the paper's numbers, the config delta."""
    import pandas as pd

    rows = rows_for(notebook) if notebook else load_experiments()
    return pd.DataFrame([{"id": r["id"], "label": r["label"], **{f"paper_{k}": v for k, v in r["paper"].items()},
                          "config": {k: v for k, v in r["config"].items()}} for r in rows]).set_index("id")


def train_sizes(run_dir: str | Path) -> dict[str, int]:
    """Training examples per task of a finished run (what its PAL schedule was computed from)."""
    m = read_metrics(run_dir)
    return {t: v["train_used"] for t, v in m["data"].items() if isinstance(v, dict)}


def reach_table(run_dirs: list[str | Path], labels: dict[str, str] | None = None, fraction: float = 0.95):
    """How fast each run got there: examples seen and seconds until its dev mean first reached a common
    target (``fraction`` of the weakest run's best), plus its first and best dev mean. Tests speed-up claims.
    ``labels`` maps run names (row ids) to display names."""
    import pandas as pd

    evals = [[r for r in read_history(d) if r["type"] == "eval"] for d in run_dirs]
    names = [run_name(d) for d in run_dirs]
    several = len(set(names)) < len(names)
    shown = [(labels or {}).get(n, n) + (f" ({Path(d).name})" if several else "") for n, d in zip(names, run_dirs)]
    bests = [max(r["mean"] for r in ev) for ev in evals if ev]
    target = fraction * min(bests) if bests else float("nan")
    out = []
    for label, ev in zip(shown, evals):
        hit = next((r for r in ev if r["mean"] >= target), None)
        out.append({"run": label, "first_eval_mean": ev[0]["mean"] if ev else None,
                    "best_mean": max(r["mean"] for r in ev) if ev else None, "target": target,
                    "examples_to_target": hit["examples_seen"] if hit else None,
                    "seconds_to_target": hit["wall"] if hit else None})
    return pd.DataFrame(out).set_index("run")


# ------------------------------------------------------------------ results
def collect_metrics(out_dir: str | Path = "outputs/runs") -> list[dict]:
    """Every finished run's metrics.json under out_dir (with its run directory)."""
    from mtlib.config import resolve_path

    rows = []
    for path in sorted(resolve_path(out_dir).glob("*/seed*/metrics.json")):
        m = read_metrics(path.parent)
        m["run_dir"] = str(path.parent)
        rows.append(m)
    return rows


def read_history(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_metrics(run_dir: str | Path) -> dict:
    """A finished run's metrics.json as a dict."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def run_name(run_dir: str | Path) -> str:
    """The run (row) name of a run directory ``<out_dir>/<name>-<hash>/seed<k>`` (see RunConfig.run_dir)."""
    return Path(run_dir).parent.name.rsplit("-", 1)[0]


# ------------------------------------------------------------------ batch runs with papermill
def list_notebooks(only: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    folder = folder or REPO_ROOT / "notebooks"
    nbs = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        matches = {o: {nb for nb in nbs if nb.stem.startswith(o)} for o in only}
        picked = [nb for nb in nbs if any(nb in m for m in matches.values())]
        unknown = [o for o in only if not matches[o]]
        if unknown:
            raise ValueError(f"--only: no notebook matches {unknown}; notebooks: {', '.join(n.stem for n in nbs)}")
        nbs = picked
    return nbs


def run_workbook(profile: str, only: list[str] | None = None, out_dir: str | Path = "outputs/notebooks",
                 dry_run: bool = False, folder: Path | None = None, parameters: dict | None = None) -> int:
    """Execute notebooks with papermill; keep going past failures; report and return non-zero if any failed."""
    import papermill as pm

    load_profile(profile)  # a bad profile fails here, before any notebook starts
    notebooks = list_notebooks(only, folder)
    out_dir = Path(out_dir) / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for nb in notebooks:
        target = out_dir / nb.name
        print(f"[workbook] {nb.name} -> {target}", flush=True)
        if dry_run:
            continue
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(target), parameters={"profile": profile, **(parameters or {})},
                                kernel_name="python3", progress_bar=False, cwd=str(REPO_ROOT))
            results.append((nb.name, True, time.perf_counter() - t0, ""))
        except Exception as e:  # noqa: BLE001 - report every failure, then go on
            reason = _failure_reason(e)
            results.append((nb.name, False, time.perf_counter() - t0, reason))
            print(f"[workbook] FAILED {nb.name}: {reason}", flush=True)
    if dry_run:
        return 0
    print("\n[workbook] report")
    for name, ok, secs, reason in results:
        print(f"  {'ok    ' if ok else 'FAILED'} {name:32s} {secs:7.1f} s  {reason}")
    total = sum(r[2] for r in results)
    failed = [r for r in results if not r[1]]
    print(f"  {len(results) - len(failed)} passed, {len(failed)} failed, {total:.0f} s in all")
    return 1 if failed else 0


def _failure_reason(e: Exception) -> str:
    name = getattr(e, "ename", type(e).__name__)
    value = getattr(e, "evalue", str(e))
    text = f"{name}: {value}".strip()
    if not text or text == ":":
        text = traceback.format_exception_only(type(e), e)[-1].strip()
    return text.splitlines()[0][:300]


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
