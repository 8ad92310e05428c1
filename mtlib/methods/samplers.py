"""Task samplers: which task the next batch comes from.

- ``random``: uniform over tasks; ``round_robin``: sst, para, sts, sst, ...
- ``pal`` (Stickland & Murray 2019, "annealed sampling"): p_t proportional to N_t^alpha with alpha
  falling linearly from 1 to 0.2 over the epochs, so big tasks dominate early and the mix evens out.
- ``pal_control``: the original's "with control" variant used by Gradient Compromise: groups of K
  batches in which every task appears at least once and task t about K*p_t times (docs/original.md §3).
"""

from __future__ import annotations

import random
from typing import Mapping, Sequence

import numpy as np

SAMPLERS = ("random", "round_robin", "pal", "pal_control")
PAL_COUNTS = ("examples", "batches")  # N_t of the PAL schedule: training examples, or batches of them


def pal_alpha(epoch: int, num_epochs: int) -> float:
    """alpha_e = 1 - 0.8 (e-1)/(E-1), epochs counted from 1; 0.2 when E == 1 (as the original)."""
    if epoch < 1 or epoch > max(num_epochs, 1):
        raise ValueError(f"epoch must be in 1..{num_epochs}, got {epoch}")
    if num_epochs == 1:
        return 0.2
    return 1.0 - 0.8 * (epoch - 1) / (num_epochs - 1)


def pal_probabilities(sizes: Sequence[float] | Mapping[str, float], epoch: int, num_epochs: int) -> np.ndarray:
    """p_t = N_t^alpha / sum_s N_s^alpha for epoch ``epoch`` (from 1) of ``num_epochs``."""
    values = np.asarray(list(sizes.values()) if isinstance(sizes, Mapping) else sizes, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0 or np.any(values <= 0):
        raise ValueError(f"sizes must be positive task sizes, got {values.tolist()}")
    weights = values ** pal_alpha(epoch, num_epochs)
    return weights / weights.sum()


def pal_control_probabilities(p: np.ndarray, k: int) -> np.ndarray:
    """q_t = clip((K p_t - 1)/(K - 3), 0.025, 1), renormalised (docs/original.md §3, for 3 tasks)."""
    t = len(p)
    q = np.clip((k * np.asarray(p) - 1) / max(k - t, 1), 0.025, 1.0)
    return q / q.sum()


def task_ratios(sizes: Mapping[str, float], num_epochs: int) -> "list[dict[str, float]]":
    """The PAL schedule per epoch, for plots: [{'epoch': 1, 'alpha': 1.0, 'sst': p, ...}, ...]."""
    rows = []
    for e in range(1, num_epochs + 1):
        p = pal_probabilities(sizes, e, num_epochs)
        rows.append({"epoch": e, "alpha": pal_alpha(e, num_epochs), **dict(zip(sizes, p.tolist()))})
    return rows


class TaskSampler:
    """Draws task names, one batch at a time, seeded; ``set_epoch`` before each epoch (from 1)."""

    def __init__(
        self, kind: str, tasks: Sequence[str], sizes: Mapping[str, float], num_epochs: int, seed: int = 0, k: int = 16
    ):
        if kind not in SAMPLERS:
            raise ValueError(f"unknown sampler {kind!r}; allowed: {', '.join(SAMPLERS)}")
        missing = [t for t in tasks if t not in sizes]
        if missing:
            raise ValueError(f"sampler: no size for task(s) {missing}")
        self.kind, self.tasks, self.num_epochs, self.k = kind, list(tasks), num_epochs, k
        self.sizes = {t: float(sizes[t]) for t in self.tasks}
        self.rng = np.random.default_rng(seed)
        self._py = random.Random(seed)
        self._rr = 0
        self.set_epoch(1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.p = pal_probabilities(self.sizes, epoch, self.num_epochs)

    def probabilities(self) -> dict[str, float]:
        if self.kind in ("random", "round_robin"):
            return {t: 1 / len(self.tasks) for t in self.tasks}
        return dict(zip(self.tasks, self.p.tolist()))

    def next_task(self) -> str:
        if self.kind == "round_robin":
            task = self.tasks[self._rr % len(self.tasks)]
            self._rr += 1
            return task
        if self.kind == "random":
            return self.tasks[int(self.rng.integers(len(self.tasks)))]
        if self.kind == "pal":
            return self.tasks[int(self.rng.choice(len(self.tasks), p=self.p))]
        return self.group()[0]  # pal_control drawn one at a time: first of a fresh group

    def group(self, k: int | None = None, combine: str = "encourage") -> list[str]:
        """K task names for one Gradient Compromise update.

        encourage: every task once, then K-T draws from the controlled q, shuffled (pal_control);
        force: every task once, then K-T draws from the plain PAL probabilities (docs/original.md §5).
        """
        k = self.k if k is None else k
        q = pal_control_probabilities(self.p, k) if combine == "encourage" else self.p
        draws = self.rng.choice(len(self.tasks), size=k - len(self.tasks), p=q)
        names = self.tasks + [self.tasks[int(i)] for i in draws]
        self._py.shuffle(names)
        return names

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "py": self._py.getstate(), "rr": self._rr, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        py = state["py"]
        self._py.setstate((py[0], tuple(py[1]), py[2]))
        self._rr = state["rr"]
        self.set_epoch(state["epoch"])
