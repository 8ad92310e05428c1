"""How fast a run trained: per phase, examples/s and tokens/s of its updates and examples/s of its evaluation.

Counted on the host (token counts come with each batch, ``mtlib.data.tokens``), so measuring never waits for
the device beyond what a step already does. The counters travel in ``last.pt``, so a resumed run reports the
whole phase, not only what ran after the restart (the seconds are those spent training, not wall time).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

COUNTERS = (
    "train_seconds",
    "examples",
    "tokens",
    "padded_tokens",
    "updates",
    "eval_seconds",
    "eval_examples",
    "combine_seconds",
)  # combine_seconds: a combined step's gradient method (mtlib.train.steps.CombinedStep)


class SpeedMeter:
    def __init__(self, state: dict | None = None):
        self.phases: dict[str, dict[str, float]] = {}
        if state:
            self.load_state_dict(state)

    def _row(self, name: str) -> dict[str, float]:
        return self.phases.setdefault(name, dict.fromkeys(COUNTERS, 0))

    @contextmanager
    def training(self, phase):
        """Times one update of ``phase`` and counts the examples and tokens its batches held."""
        loss = phase.step.batch_loss
        before = (loss.examples, loss.tokens, loss.padded_tokens, getattr(phase.step, "combine_seconds", 0.0))
        start = time.perf_counter()
        yield
        row = self._row(phase.name)
        row["train_seconds"] += time.perf_counter() - start
        row["examples"] += loss.examples - before[0]
        row["tokens"] += loss.tokens - before[1]
        row["padded_tokens"] += loss.padded_tokens - before[2]
        row["updates"] += 1
        row["combine_seconds"] += getattr(phase.step, "combine_seconds", 0.0) - before[3]

    @contextmanager
    def evaluation(self, name: str, examples: int):
        start = time.perf_counter()
        yield
        row = self._row(name)
        row["eval_seconds"] += time.perf_counter() - start
        row["eval_examples"] += examples

    def state_dict(self) -> dict:
        return {name: dict(row) for name, row in self.phases.items()}

    def load_state_dict(self, state: dict) -> None:
        self.phases = {name: {k: row.get(k, 0) for k in COUNTERS} for name, row in state.items()}

    def report(self) -> dict:
        """{phase: rates and totals, ..., "all": over every phase} for metrics.json."""
        rows = dict(self.phases)
        if rows:
            rows["all"] = {k: sum(r[k] for r in self.phases.values()) for k in COUNTERS}
        return {name: rates(row) for name, row in rows.items()}


def rates(row: dict) -> dict:
    def per(a: float, b: float) -> float | None:
        return round(a / b, 2) if b > 0 else None

    return {
        "examples_per_s": per(row["examples"], row["train_seconds"]),
        "tokens_per_s": per(row["tokens"], row["train_seconds"]),
        "padding": per(row["padded_tokens"] - row["tokens"], row["padded_tokens"]),  # share of padded slots
        "eval_examples_per_s": per(row["eval_examples"], row["eval_seconds"]),
        # of training time, the gradient method's part (4 digits: it is ~1e-2)
        "combine_share": round(row["combine_seconds"] / row["train_seconds"], 4) if row["train_seconds"] else None,
        "train_seconds": round(row["train_seconds"], 2),
        "examples": int(row["examples"]),
        "tokens": int(row["tokens"]),
        "updates": int(row["updates"]),
    }
