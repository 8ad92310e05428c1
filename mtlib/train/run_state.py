"""RunState: where a run stands, apart from its model and its phase's optimizer: the counters, the clock, the
resumes, the adopted shared phases and the speed meter, in one object the trainer owns.

Two checkpoints carry it: ``last.pt`` (a resume point, at every epoch's end) and a shared-phase hand-over
(``mtlib.train.shared_phases``, at the end of a phase that other runs may start from). What a later phase
reads of the ones before is the same in both, ``training_state``: the model, the batch streams, the RNG, the
examples seen, the seconds trained and the speed counters. The keys are those the trainer saved before
RunState existed, so a ``last.pt`` or a hand-over written by that code resumes and is adopted as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mtlib.train.distributed import restore_rng, rng_state
from mtlib.train.phase import Phase, Progress
from mtlib.train.speed import SpeedMeter


@dataclass
class RunState:
    examples_seen: int = 0  # training examples drawn over every phase (the x axis of history rows)
    wall_before: float = 0.0  # seconds trained before this process started (earlier ones, an adopted hand-over)
    history_lines: int = 0  # rows in history.jsonl at this point: a resume cuts the file back to them
    resumed: list[dict] = field(default_factory=list)  # {phase, epoch} of each resume (metrics.json)
    shared: dict | None = None  # the leading phases adopted from another run (metrics.json's shared_phases)
    phase: int = 0  # the phase being trained (a resume starts in it)
    progress: Progress = field(default_factory=Progress)  # that phase's (its best epoch: metrics.json)
    speed: SpeedMeter = field(default_factory=SpeedMeter)  # examples/s, tokens/s per phase
    started: float = field(default_factory=time.perf_counter)  # this process's clock when it took the run on

    @classmethod
    def resuming(cls, ckpt: dict) -> RunState:
        """The state ``last.pt`` saved, with this resume noted."""
        phase = ckpt["phase"]
        return cls(
            examples_seen=ckpt["examples_seen"],
            wall_before=ckpt["wall"],
            history_lines=ckpt["history_lines"],
            resumed=[*ckpt["resumed"], {"phase": phase["index"], "epoch": phase["progress"]["epoch"]}],
            shared=ckpt.get("shared"),
            phase=phase["index"],
            speed=SpeedMeter(ckpt.get("speed")),
        )

    def wall(self) -> float:
        """Seconds the run has trained, over every process (and the phases it adopted)."""
        return self.wall_before + time.perf_counter() - self.started

    # ---------------------------------------------------------------- during training
    def enter(self, phase: Phase) -> None:
        """A phase starts (or resumes, its state loaded): its step counts examples on from the run's count."""
        self.phase, self.progress = phase.index, phase.progress
        phase.step.batch_loss.examples = self.examples_seen

    def count(self, phase: Phase) -> None:
        """After an update: the examples its batches held."""
        self.examples_seen = phase.step.batch_loss.examples

    # ---------------------------------------------------------------- checkpoints
    def training_state(self, model, streams: dict, device: torch.device) -> dict:
        """What a later phase reads of the ones before (saved in last.pt and in a shared-phase hand-over)."""
        return {
            "model": model.state_dict(),
            "streams": {t: s.state_dict() for t, s in streams.items()},
            "rng": rng_state(device),  # every rank's, on N processes
            "examples_seen": self.examples_seen,
            "wall": self.wall(),
            "speed": self.speed.state_dict(),
        }

    def last_checkpoint(self, run_id: str, model, phase: Phase, streams: dict, device: torch.device) -> dict:
        """``last.pt``: the training state, the phase's optimizer, sampler, ... and the run's bookkeeping."""
        return {
            "run_id": run_id,
            "phase": phase.state_dict(),
            **self.training_state(model, streams, device),
            "history_lines": self.history_lines,
            "resumed": self.resumed,
            "shared": self.shared,
        }

    def adopt(self, handover: dict) -> None:
        """The counters of another run's hand-over (``shared_phases.adopt``): this run's time includes theirs."""
        self.examples_seen, self.speed = handover["examples_seen"], SpeedMeter(handover["speed"])
        self.wall_before, self.started = handover["wall"], time.perf_counter()
        self.shared = {"phases": handover["phases"], "from": handover["source"], "seconds": round(handover["wall"], 1)}


def load_training_state(state: dict, model, streams: dict, device: torch.device, where: Path) -> None:
    """Model, batch streams and RNG from ``training_state`` (the RNG refuses another world size)."""
    model.load_state_dict(state["model"])
    for t, s in state["streams"].items():
        streams[t].load_state_dict(s)
    restore_rng(state["rng"], device, where)
