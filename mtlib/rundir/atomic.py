"""The one atomic-write helper and the named fault points the kill tests stop a process at."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from mtlib.rundir.temporaries import TMP

FAULT_ENV = "MTLIB_FAULT"  # tests: "<point>" or "<point>:<n>" kills this process (SIGKILL) at that write point


def fault_point(name: str) -> None:
    """A named place where a run may be interrupted; the fault-injection tests kill the process here.

    ``MTLIB_FAULT=<name>:<n>`` sends SIGKILL the n-th time (from 1) this point is reached; unset, it costs
    one environment lookup.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, sep, nth = spec.rpartition(":")  # the count is the last field: names may hold ':' ("write:last.pt:2")
    if not sep or not nth.isdigit():
        point, nth = spec, "1"
    if point != name:
        return
    count = _FAULT_COUNTS.get(name, 0) + 1
    _FAULT_COUNTS[name] = count
    if count == int(nth):
        os.kill(os.getpid(), 9)


_FAULT_COUNTS: dict[str, int] = {}


def _explain(err: OSError, path: Path) -> OSError:
    if err.errno == errno.ENOSPC:
        return OSError(
            errno.ENOSPC,
            f"no space left on device while writing {path}; free some space and run again (earlier files are intact)",
        )
    return OSError(err.errno, f"could not write {path}: {err.strerror or err}")


def _os_error(err: BaseException) -> OSError | None:
    """The full-disk OSError behind ``err``: torch.save reports a failed write to its file object as a
    RuntimeError ("unexpected pos ...") whose context is the OSError."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def atomic_write(path: str | Path, data: bytes | str | None = None, *, writer=None) -> Path:
    """Write ``data`` (or call ``writer(file)``) to a temporary file beside ``path``, fsync it, rename it over
    ``path`` and fsync the folder: readers see the old file or the new one, never half of one. On any failure
    the temporary file is removed and the old file is left as it was; ``ENOSPC`` says "no space left"."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP}{os.getpid()}@{socket.gethostname()}")
    try:
        with open(tmp, "wb") as f:
            if writer is not None:
                writer(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        fault_point(f"write:{path.name}")  # tests: a kill with the new file written but not yet in place
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _explain(err, path) from err
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        cause = _os_error(err) if isinstance(err, Exception) else None
        if cause is not None:
            raise _explain(cause, path) from err
        raise
    return path
