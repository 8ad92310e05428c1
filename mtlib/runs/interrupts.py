"""Ctrl-C and SIGTERM end a command cleanly: one line, exit 130 or 143, nothing left running.

Why: a signal that kills the process outright skips every ``finally``: the pool's worker processes were
orphaned (they kept training and holding their runs' locks, and the next sweep got "in use by pid ...") and
its temporary folders stayed. So ``python -m mtlib`` turns SIGTERM (and SIGINT) into ``Interrupted``, raised
in the main thread: context managers and ``finally`` blocks run (run locks released, workers and kernels
stopped, temporary folders removed), and ``mtlib.cli`` prints ``interrupted: <what>; ...`` and returns
128 + the signal's number. ``explained`` lets the code that knows what is running say where it resumes.

Worker processes also end when their parent dies without cleaning up (SIGKILL): ``die_with_parent``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

RESUME = "run the same command again to resume"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM received (``signum``). A KeyboardInterrupt, so ``except Exception`` never swallows it
    (a sweep's "one run failed, the others go on") and code that handles Ctrl-C handles SIGTERM too."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum


# the signals turned into Interrupted: a library that raises a bare KeyboardInterrupt in its place (Ray's
# wait does) loses the exception's signum
_received: list[int] = []


def _raise(signum, frame) -> None:
    _received.append(signum)
    raise Interrupted(signum)


@contextlib.contextmanager
def raised_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``Interrupted`` in the main thread; the previous handlers come back after.
    A signal the caller ignores stays ignored (a shell's background job or nohup ignores SIGINT)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    _received.clear()
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            old[sig] = signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def handlers_kept() -> Iterator[None]:
    """Put ``raised_on_signals``'s handlers back after a library replaced them (``ray.init`` installs a SIGTERM
    handler that exits at once, skipping every ``finally``); anyone else's handlers are left as they are."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in before.items():
                if handler is _raise:
                    signal.signal(sig, handler)


def exit_code(err: KeyboardInterrupt) -> int:
    """128 + the signal's number, what a shell reports for a process a signal ended: 130 SIGINT, 143 SIGTERM."""
    return 128 + getattr(err, "signum", _received[0] if _received else signal.SIGINT)


@contextlib.contextmanager
def explained(describe: Callable[[], str]) -> Iterator[None]:
    """On an interrupt, ``describe()`` says what was running and where the same command resumes; the text
    goes on the exception (``message``). An outer ``explained`` overwrites an inner one: it knows the command."""
    try:
        yield
    except KeyboardInterrupt as err:
        with contextlib.suppress(Exception):  # a description that fails must not hide the interrupt
            err.explanation = describe()
        raise


def message(err: KeyboardInterrupt, fallback: str) -> str:
    return f"interrupted: {getattr(err, 'explanation', None) or fallback}"


def die_with_parent(parent: int) -> None:
    """This process gets SIGTERM when ``parent`` dies, even by SIGKILL, which leaves it no time to stop its
    workers: PR_SET_PDEATHSIG on Linux; and everywhere a thread that polls the parent's pid (it also covers a
    parent that died before this process got here)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG

    def watch() -> None:
        first = os.getppid()  # ``parent`` itself, unless it died already (or started us through a wrapper)
        while os.getppid() == first and _exists(parent):
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it exists
        pass
    return True


def stop_process_group(processes: list, signals: tuple = (signal.SIGTERM, signal.SIGKILL), grace: float = 5.0) -> None:
    """Each of ``signals`` in turn to each process's group (a process started in a session of its own, e.g. a
    Jupyter kernel, with whatever it started), the next to those still there after ``grace`` seconds.
    ``processes``: Popen objects."""
    alive = [p for p in processes if p.poll() is None]  # an unreaped process keeps its pid: never a reused one
    for sig in signals:
        for p in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(p.pid) == p.pid:  # its own group: never ours
                    os.killpg(p.pid, sig)
                else:
                    os.kill(p.pid, sig)
        deadline = time.monotonic() + grace
        for p in alive:
            with contextlib.suppress(Exception):
                p.wait(max(0.1, deadline - time.monotonic()))
        alive = [p for p in alive if p.poll() is None]
        if not alive:
            return


class Processes:
    """Processes that threads start, to stop together on an interrupt (``stop``: ``signals`` in turn, as
    ``stop_process_group``); one added after that is stopped at once."""

    def __init__(self, signals: tuple = (signal.SIGTERM, signal.SIGKILL)):
        self.signals, self.processes, self.stopping, self.lock = signals, [], False, threading.Lock()

    def add(self, process) -> None:
        with self.lock:
            self.processes.append(process)
            stopping = self.stopping
        if stopping:
            stop_process_group([process], self.signals[-2:])  # it has done nothing to unwind: the firm ones

    def stop(self) -> None:
        with self.lock:
            self.stopping, processes = True, list(self.processes)
        stop_process_group(processes, self.signals)
