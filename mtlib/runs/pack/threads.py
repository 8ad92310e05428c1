"""Training a pack: one thread per run, taking turns (``turns``), each its own ``Trainer``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from mtlib.config.run_config import RunConfig
from mtlib.runs.pack.pack import Pack
from mtlib.runs.pack.turns import Stopped


class PackThreads:
    """Starts the runs of one pack; ``ended`` is called in the run's thread with (index, run_dir or exception)."""

    def __init__(
        self,
        cfgs: list[RunConfig],
        callbacks: list[Callable[[dict], None] | None],
        ended: Callable[[int, Path | BaseException], None],
        packed: bool = True,
    ):
        """``packed`` False: a single run trained alone, by the same path (``engine`` for an unpackable run)."""
        self.pack = Pack(len(cfgs))
        self.packed = packed
        self.threads = [
            threading.Thread(target=self._run, args=(k, cfg, cb, ended), daemon=True, name=f"pack-{k}")
            for k, (cfg, cb) in enumerate(zip(cfgs, callbacks))
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        for t in self.threads:
            t.join()

    def stop(self) -> None:
        self.pack.turns.stop()

    def _run(self, k, cfg, callback, ended) -> None:
        from mtlib.train.trainer import run as train

        member = self.pack.member(k)
        outcome: Path | BaseException
        try:
            member.begin()
            outcome = train(cfg, callback, pack=member if self.packed else None)
        except Stopped as err:
            outcome = err
        except Exception as err:  # noqa: BLE001 - one run's failure is its own; the pack goes on
            outcome = err
        finally:
            member.leave()
        ended(k, outcome)


def train_pack(cfgs: list[RunConfig], callbacks=None) -> list[Path | BaseException]:
    """Train ``cfgs`` (one configuration, different seeds) as one pack; each run's directory or exception."""
    outcomes: list = [None] * len(cfgs)

    def ended(k, outcome):
        outcomes[k] = outcome

    threads = PackThreads(cfgs, callbacks or [None] * len(cfgs), ended)
    threads.start()
    try:
        threads.join()
    except BaseException:
        threads.stop()
        raise
    return outcomes
