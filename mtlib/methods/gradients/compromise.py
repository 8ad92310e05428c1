"""Gradient Compromise (the study's own method, docs/original.md §5): per-task loss divisors ``n_t ** beta``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["compromise_beta", "compromise_weights", "COMPROMISE_COMBINES", "COMPROMISE_COUNTS"]

COMPROMISE_COMBINES = ("encourage", "force")  # how the K batches of an update are drawn (samplers.TaskSampler.group)
COMPROMISE_COUNTS = ("update", "cumulative")  # n_t of this update, or since the epoch began (the original's bug)


def compromise_beta(epoch: int, num_epochs: int) -> float:
    """Gradient Compromise exponent ``0.2 + 0.8 (e-1)/(E-1)``, epochs counted from 1 (docs/original.md §5).

    With E = 1 the original divides by zero; we return 1.0 (the end point of the schedule).
    """
    if num_epochs < 1 or not 1 <= epoch <= num_epochs:
        raise ValueError(f"need 1 <= epoch <= num_epochs, got epoch={epoch}, num_epochs={num_epochs}")
    if num_epochs == 1:
        return 1.0
    return 0.2 + 0.8 * (epoch - 1) / (num_epochs - 1)


def compromise_weights(counts: Mapping[str, int] | Tensor | Sequence[int], beta: float) -> dict[str, float] | Tensor:
    """Per-task loss divisors ``n_t ** beta`` for Gradient Compromise (docs/original.md §5).

    A task with no batches gets divisor 1 rather than 0: its loss is zero anyway and 0**beta would
    turn that into a division by zero.
    """
    if isinstance(counts, Mapping):
        return {task: float(max(n, 1)) ** beta for task, n in counts.items()}
    return torch.as_tensor(counts, dtype=torch.float32).clamp_min(1.0) ** beta
