"""One worker process of the pool engine (``mtlib.runs.pool``): trains the runs it is sent.

Started as ``python -m mtlib.runs.worker``: a fresh interpreter, so the caller's script, notebook or
``__main__`` is never imported again. Protocol, one JSON object a line: the pool writes ``{"key": ..., "config":
RunConfig.to_dict()}`` to stdin, the worker answers on its stdout with the run's events
(``mtlib.runs.events``): an ``evaluated`` event after each dev evaluation and one ``finished`` (run_dir) or
``failed`` (one line); end of stdin ends it. Everything
else the run prints (the trainer's lines, library warnings, a traceback) goes to stderr, the worker's log.

Stopping: the pool sends SIGTERM, which unwinds the run (its lock released, its last.pt kept) and ends the
worker with 143; a terminal's Ctrl-C is the pool's to handle (it reaches the whole process group), so the
worker ignores SIGINT. The worker also ends when the pool's process dies (``die_with_parent``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback


def main() -> int:
    from mtlib.runs.interrupts import die_with_parent, exit_code, raised_on_signals

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid())
    try:
        with raised_on_signals():  # SIGTERM raises Interrupted: the run's `finally` blocks run
            serve()
    except KeyboardInterrupt as err:
        print(
            f"worker {os.getpid()}: stopped (exit {exit_code(err)}); its run resumes from its last.pt",
            file=sys.stderr,
            flush=True,
        )
        return exit_code(err)
    return 0


def serve() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol keeps the real stdout ...
    os.dup2(2, 1)  # ... and every print of the run goes to the log
    from mtlib.config.run_config import RunConfig
    from mtlib.runs.events import Event, row_event
    from mtlib.runs.executor import one_line
    from mtlib.train.trainer import run

    for line in sys.stdin:
        order = json.loads(line)
        key = order["key"]

        def send(event: Event) -> None:
            answers.write(event.to_json() + "\n")

        def report(row: dict) -> None:
            event = row_event(key, row)
            if event is not None and event.kind == "evaluated":
                send(event)

        try:
            run_dir = run(RunConfig.from_dict(order["config"]), callback=report)
        except Exception as err:  # noqa: BLE001 - one run's failure is reported; the worker takes the next run
            traceback.print_exc()
            send(Event("failed", key, {"error": one_line(err)}))
        else:
            send(Event("finished", key, {"run_dir": str(run_dir)}))


if __name__ == "__main__":
    sys.exit(main())
