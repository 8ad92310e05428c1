"""The executor's engine that trains packs: runs of one configuration (seeds differ) submitted one after the
other are gathered into a pack of up to ``size`` runs and trained as one batched model in this process
(``mtlib.runs.pack``); a run that cannot be packed (``unpackable`` says why) trains alone, in the same way.
Events reach the executor from ``wait`` in the main thread, in the order the runs wrote them."""

from __future__ import annotations

import os
import queue
import sys

from mtlib.config.run_config import RunConfig
from mtlib.runs.events import Event, row_event
from mtlib.runs.executor import Run, finish_event, one_line
from mtlib.runs.pack.sizing import pack_size
from mtlib.runs.pack.threads import PackThreads
from mtlib.runs.pack.turns import Stopped


def unpackable(cfg: RunConfig) -> str | None:
    """Why ``cfg`` cannot be trained in a pack (None: it can)."""
    phases = cfg.phase_configs()
    if cfg.dropout_rng != "keyed":
        return "dropout_rng is 'torch' (a packed run draws keyed dropout masks: --set dropout_rng=keyed)"
    if any(p.smart_weight > 0 for p in phases):
        return "SMART perturbs the input embeddings in an inner loop the pack does not batch"
    if cfg.head in ("rnn", "lstm"):
        return f"head {cfg.head!r}: recurrent heads are not batched over runs"
    if cfg.compile:
        return "compile: true (a packed model is computed by torch.func.vmap)"
    if cfg.precision == "fp16":
        return "precision fp16 needs a GradScaler per run"
    return None


def pack_key(cfg: RunConfig) -> str:
    """Runs with the same key can share a pack: the same settings, device and backbone (the seed differs)."""
    return f"{cfg.settings_hash()} {cfg.device} {cfg.backbone} {cfg.out_dir}"


class PackedEngine:
    def __init__(self, size: int | None = None, show: bool = True):
        """``size``: runs per pack (None: as many as the device's free memory holds, ``sizing``)."""
        self.size, self.show = size, show
        self.forming: list[Run] = []
        self.later: list[Run] = []
        self.threads: PackThreads | None = None
        self.events: queue.Queue = queue.Queue()
        self.open = 0
        self.chosen: dict[str, int] = {}

    def capacity(self, cfg: RunConfig) -> int:
        if unpackable(cfg):
            return 1
        key = pack_key(cfg)
        if key not in self.chosen:
            self.chosen[key], line = pack_size(cfg, self.size)
            if self.show:
                print(f"[pack] {cfg.name}: {line}", file=sys.stderr, flush=True)
        return self.chosen[key]

    def free(self) -> int:
        if self.threads is not None or self.later:
            return 0
        return 1 if not self.forming else max(0, self.capacity(self.forming[0].cfg) - len(self.forming))

    def busy(self) -> bool:
        return bool(self.threads is not None or self.forming or self.later)

    def submit(self, run: Run, emit) -> None:
        if self.forming and pack_key(run.cfg) != pack_key(self.forming[0].cfg):
            self.later.append(run)
        else:
            self.forming.append(run)

    def wait(self, emit) -> None:
        if self.threads is None:
            self._start()
        while True:
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            emit(event)
            if event.kind in ("finished", "failed"):
                self.open -= 1
                if self.open == 0:
                    self.threads.join()
                    self.threads = None
                return

    def _start(self) -> None:
        members, self.forming = self.forming, []
        if self.later:
            key = pack_key(self.later[0].cfg)
            self.forming = [r for r in self.later if pack_key(r.cfg) == key]
            self.later = [r for r in self.later if pack_key(r.cfg) != key]
        why = unpackable(members[0].cfg)
        if why and self.show:
            print(f"[pack] {members[0].key} trains alone: {why}", file=sys.stderr, flush=True)
        for r in members:
            self.events.put(Event("started", r.key, {"pid": os.getpid(), "pack": len(members)}))

        def callback(r: Run):
            def on_row(row: dict) -> None:
                event = row_event(r.key, row)
                if event is not None:
                    self.events.put(event)

            return on_row

        def ended(k: int, outcome) -> None:
            r = members[k]
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Stopped):
                    r.exception = outcome
                self.events.put(Event("failed", r.key, {"error": one_line(outcome)}))
            else:
                self.events.put(finish_event(r, outcome))

        self.open = len(members)
        self.threads = PackThreads([r.cfg for r in members], [callback(r) for r in members], ended, packed=why is None)
        self.threads.start()

    def close(self) -> None:
        if self.threads is not None:
            self.threads.stop()
            self.threads = None
        self.forming, self.later = [], []
