"""Temporary files that ``atomic_write`` leaves when its process is killed midway, and removing them."""

from __future__ import annotations

import os
import socket
from pathlib import Path

TMP = ".tmp"  # atomic_write's temporary files: .<name>.tmp<pid>@<host>


def remove_dead_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files ``atomic_write`` left in ``folder`` when its process was killed mid-write
    (``.<name>.tmp<pid>@<host>``, this host's, the process gone); returns what was removed. Files of live
    processes and of other hosts (a shared filesystem) are left alone."""
    removed = []
    for p in Path(folder).glob(f".*{TMP}*"):
        if abandoned(p):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass  # gone already, or a read-only folder: nothing to clean there
    return removed


def abandoned(temporary: Path) -> bool:
    """Whether an ``atomic_write`` temporary file's writer (this host's, by its name) is gone."""
    pid, _, host = temporary.name.rpartition(TMP)[2].partition("@")
    return pid.isdigit() and host in ("", socket.gethostname()) and not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True
