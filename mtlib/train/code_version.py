"""Which code produced a run: the package version and, in a git checkout, the commit and whether files differ.

Recorded in identity.json and metrics.json (not hashed into the run id: a finished run stays reusable across
commits; docs/run-directory.md, "The cache"), so a results table can say when the runs
under it come from different code versions.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from mtlib import __version__

REPO = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=1)  # the code a process runs does not change while it runs
def code_version() -> dict:
    out = {"mtlib": __version__, "commit": None, "dirty": None}
    if not (REPO / ".git").exists():
        return out  # an installed package: its version is all there is
    try:
        commit = _git("rev-parse", "HEAD")
        status = _git("status", "--porcelain", "--untracked-files=no", "--", "mtlib")
    except (OSError, subprocess.SubprocessError):
        return out
    return {**out, "commit": commit[:12] or None, "dirty": bool(status)}


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10, check=True)
    return done.stdout.strip()
