"""File names of a run directory and the directory itself: its exclusive lock, history, metrics, checkpoints."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from mtlib.rundir.atomic import _explain, atomic_write
from mtlib.rundir.checkpoint import model_state, save_checkpoint

CONFIG, IDENTITY, HISTORY, METRICS, FAILED = (
    "config.yaml",
    "identity.json",
    "history.jsonl",
    "metrics.json",
    "failed.json",
)
LAST, BEST, PREDICTIONS, LOCK = "last.pt", "best.pt", "predictions", ".lock"


class RunLocked(RuntimeError):
    """Another process holds the run directory."""


class RunDirectory:
    """One run's folder: where each file lives, how it is written, who may write it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    # -- names
    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def identity(self) -> Path:
        return self.path / IDENTITY

    @property
    def history(self) -> Path:
        return self.path / HISTORY

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def failed(self) -> Path:
        return self.path / FAILED

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def predictions(self) -> Path:
        return self.path / PREDICTIONS

    def phase_best(self, phase: int, last_phase: bool) -> Path:
        """Where phase ``phase`` keeps its best model: ``best.pt`` for the last phase, else its own file,
        so a later phase can never overwrite the model an earlier phase hands over."""
        return self.best if last_phase else self.path / f"phase{phase}-best.pt"

    def finished(self) -> bool:
        return self.metrics.is_file()

    def instance(self) -> str | None:
        """The token identity.json records for this training of the run (a run deleted and trained again gets
        a new one); None when there is none (a run from before tokens were recorded)."""
        try:
            return json.loads(self.identity.read_text(encoding="utf-8")).get("instance")
        except (OSError, ValueError, AttributeError):
            return None

    # -- writing
    def write_text(self, name: str, text: str) -> Path:
        return atomic_write(self.path / name, text)

    def write_json(self, name: str, data) -> Path:
        """Strict JSON (NaN, e.g. a constant prediction's Pearson r, as null), written atomically."""
        return atomic_write(self.path / name, json.dumps(_finite(data), indent=2, allow_nan=False))

    def append_history(self, row: dict) -> None:
        """One line appended and flushed; rows are JSON without NaN (a NaN is written as null)."""
        line = json.dumps(_finite(row), allow_nan=False) + "\n"
        try:
            with open(self.history, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
        except OSError as err:
            raise _explain(err, self.history) from err

    def truncate_history(self, lines: int) -> int:
        """Keep the first ``lines`` rows (what the checkpoint being resumed had seen); returns how many remain."""
        kept = self.history.read_text(encoding="utf-8").splitlines()[:lines] if self.history.exists() else []
        atomic_write(self.history, "".join(line + "\n" for line in kept))
        return len(kept)

    def remove_leftovers(self) -> None:
        """After metrics.json: the resume point, phase hand-over models and stray temporary files go."""
        self.last.unlink(missing_ok=True)
        self.failed.unlink(missing_ok=True)
        for p in self.path.glob("phase*-best.pt"):
            p.unlink(missing_ok=True)
        for p in self.path.glob(".*.tmp*"):
            p.unlink(missing_ok=True)

    # -- checkpoints (methods, so a distributed run's other ranks can keep theirs in memory)
    def save_checkpoint(self, path: str | Path, state: dict) -> Path:
        return save_checkpoint(path, state)

    def model_state(self, path: str | Path, map_location="cpu", remedy: str = "") -> dict:
        return model_state(path, map_location, remedy)

    # -- the lock
    def lock(self) -> "RunDirectory":
        """Take the run's exclusive lock (flock; released by the kernel if the process dies). A second
        process gets ``RunLocked`` naming the holder. Use as ``with run_dir.lock(): ...``."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / LOCK
        while True:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunLocked(
                    f"{self.path} is in use by {holder}; wait for that run to end or stop it "
                    "(two processes must not train one run)"
                ) from None
            # the holder before us may have removed the file between our open and our flock: retry
            if os.path.exists(lock_path) and os.fstat(fd).st_ino == os.stat(lock_path).st_ino:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self._lock_fd = fd
        return self

    @contextlib.contextmanager
    def reading(self):
        """Hold the run's lock shared while reading it (``predict``): refused (``RunLocked``) while a process
        trains the run, and a trainer cannot start on it meanwhile. A lock file this creates is removed again,
        so the run's folder is left as it was; one that cannot be created (a read-only copy of someone's
        outputs, where nobody can train either) is done without."""
        lock_path, created = self.path / LOCK, False
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            try:
                fd, created = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
            except OSError:
                yield self
                return
        except OSError:
            yield self
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLocked(
                    f"{self.path} is being trained by {_read_holder(fd)}; wait for that run to end "
                    "(its files change until then)"
                ) from None
            yield self
        finally:
            if created:
                lock_path.unlink(missing_ok=True)
            os.close(fd)

    def unlock(self) -> None:
        if self._lock_fd is None:
            return
        (self.path / LOCK).unlink(missing_ok=True)
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> "RunDirectory":
        if self._lock_fd is None:
            self.lock()
        return self

    def __exit__(self, *exc) -> None:
        self.unlock()


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 200).decode(errors="replace").strip() or "another process"
    except OSError:
        return "another process"


def _finite(value):
    """NaN and infinities as None, so history rows and JSON files stay strict JSON."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
