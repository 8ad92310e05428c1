"""The papermill driver: run the workbook's notebooks in batch under a profile, report what passed."""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from mtlib.config import REPO_ROOT
from mtlib.study.resolve import load_profile


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


