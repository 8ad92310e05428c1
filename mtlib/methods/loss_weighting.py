"""Loss weighting: a per-task multiplier on each batch's loss before its backward pass, and its own state.

- ``uncertainty``: Kendall, Gal & Cipolla 2018, "Multi-Task Learning Using Uncertainty to Weigh Losses for
  Scene Geometry and Semantics" (CVPR 2018).
- ``dwa``: Liu, Johns & Davison 2019, "End-to-End Multi-Task Learning with Attention" (CVPR 2019), §3.3.
- ``famo``: Liu, Liu, Stone & Liu 2023, "FAMO: Fast Adaptive Multitask Optimization" (NeurIPS 2023).

A step asks ``weigh(task, loss, value)`` for the loss to backpropagate (``value`` = the loss as a float) and
calls ``update(losses, counts, epoch)`` once per optimizer update with the unweighted losses. Each method's
own parameters move by a closed-form gradient and a private Adam, so nothing joins the model's optimizer and
the fp16 GradScaler never sees them. ``state_dict`` goes into the phase's checkpoint: resume stays exact.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mtlib.methods.gradients.methods import SURGERY_METHODS

__all__ = [
    "LOSS_WEIGHTINGS",
    "loss_weighting_conflict",
    "LossWeighting",
    "UncertaintyWeighting",
    "DynamicWeightAverage",
    "FAMO",
    "make_loss_weighting",
]


class LossWeighting:
    """No weighting (every multiplier 1); the base the three methods share."""

    name = "none"

    def __init__(self, tasks: list[str]) -> None:
        self.tasks = list(tasks)

    def scale(self, task: str, value: float) -> float:
        return 1.0

    def weigh(self, task: str, loss: Tensor, value: float) -> Tensor:
        s = self.scale(task, value)
        return loss if s == 1.0 else loss * s

    def update(self, losses: Mapping[str, float], counts: Mapping[str, int], epoch: int) -> None:
        pass

    def weights(self) -> dict[str, float]:
        return {t: self.scale(t, 1.0) for t in self.tasks}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class _AdamParameters(LossWeighting):
    """A ``[T]`` vector of the method's parameters moved by a private Adam on a closed-form gradient."""

    def __init__(self, tasks: list[str], lr: float = 0.025, weight_decay: float = 0.0) -> None:
        super().__init__(tasks)
        self.param = torch.zeros(len(self.tasks), dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.param], lr=lr, weight_decay=weight_decay)

    def _step(self, grad: list[float]) -> None:
        self.param.grad = torch.tensor(grad, dtype=torch.float64)
        self.optimizer.step()
        self.param.grad = None

    def state_dict(self) -> dict[str, Any]:
        # a copy: Adam's state_dict holds its live moment tensors, which load_state_dict would share
        return {"param": self.param.detach().clone(), "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            self.param.copy_(torch.as_tensor(state["param"], dtype=torch.float64))
        self.optimizer.load_state_dict(state["optimizer"])


class UncertaintyWeighting(_AdamParameters):
    """Homoscedastic uncertainty: the objective ``sum_t exp(-s_t) L_t + s_t`` with ``s_t = log sigma_t^2``
    learned (init 0), as LibMTL writes Kendall et al.'s weighting. The multiplier is ``exp(-s_t)`` and
    ``d/ds_t = 1 - exp(-s_t) L_t``; only the tasks seen in an update get a gradient (single-task steps too)."""

    name = "uncertainty"

    def scale(self, task: str, value: float) -> float:
        return math.exp(-float(self.param.detach()[self.tasks.index(task)]))

    def update(self, losses: Mapping[str, float], counts: Mapping[str, int], epoch: int) -> None:
        s = self.param.detach().tolist()
        self._step([1.0 - math.exp(-si) * losses[t] if t in losses else 0.0 for t, si in zip(self.tasks, s)])


class DynamicWeightAverage(LossWeighting):
    """DWA: ``w_t(e) = T softmax_t(r_t(e-1) / temperature)`` with ``r_t(e-1) = L_t(e-1) / L_t(e-2)``, L the mean
    training loss per batch of an epoch; weights 1 for the first two epochs (and for a task missing from
    either of the last two epochs). Epochs are the phase's, counted from 1."""

    name = "dwa"

    def __init__(self, tasks: list[str], temperature: float = 2.0) -> None:
        super().__init__(tasks)
        self.temperature = temperature
        self.epoch = 0
        self.sums = dict.fromkeys(self.tasks, 0.0)  # this epoch's losses and batches
        self.batches = dict.fromkeys(self.tasks, 0)
        self.history: list[dict[str, float | None]] = []  # the last two finished epochs' mean losses
        self.current = dict.fromkeys(self.tasks, 1.0)

    def scale(self, task: str, value: float) -> float:
        return self.current[task]

    def _roll(self) -> None:
        means = {t: self.sums[t] / self.batches[t] if self.batches[t] else None for t in self.tasks}
        self.history = (self.history + [means])[-2:]
        self.sums, self.batches = dict.fromkeys(self.tasks, 0.0), dict.fromkeys(self.tasks, 0)
        if len(self.history) < 2:
            return
        before, last = self.history
        ratios = [last[t] / before[t] if last[t] is not None and before[t] else 1.0 for t in self.tasks]
        exps = [math.exp(r / self.temperature) for r in ratios]
        self.current = {t: len(self.tasks) * e / sum(exps) for t, e in zip(self.tasks, exps)}

    def update(self, losses: Mapping[str, float], counts: Mapping[str, int], epoch: int) -> None:
        if epoch != self.epoch:
            if self.epoch:
                self._roll()  # the previous epoch is finished: its mean loss sets this epoch's weights
            self.epoch = epoch
        for t, value in losses.items():
            self.sums[t] += value
            self.batches[t] += counts.get(t, 1)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "sums": dict(self.sums),
            "batches": dict(self.batches),
            "history": [dict(h) for h in self.history],
            "current": dict(self.current),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.sums, self.batches = state["epoch"], dict(state["sums"]), dict(state["batches"])
        self.history, self.current = [dict(h) for h in state["history"]], dict(state["current"])


class FAMO(_AdamParameters):
    """FAMO: logits ``xi`` (init 0), ``z = softmax(xi)``; each task's loss enters as ``z_t log L_t / c`` with
    ``c = sum_s z_s / L_s`` (the paper's ``min_losses`` = 0), i.e. a multiplier ``z_t / (c L_t)`` on ``L_t``;
    after the update ``xi`` moves along ``J_softmax^T (log L_prev - log L_now)`` by Adam (lr ``loss_weighting_lr``,
    the paper's 0.025; weight decay 1e-3, the paper's gamma).

    Deviation (docs/original.md D42): the paper re-evaluates the same batch after the step to get ``L_now``
    (one more forward per task); here ``L_now`` is the next update's loss (fresh batches, no extra forward),
    and ``c`` uses the previous update's losses (a step's losses are known one task at a time). The first
    update is the plain sum."""

    name = "famo"

    def __init__(self, tasks: list[str], lr: float = 0.025, weight_decay: float = 1e-3) -> None:
        super().__init__(tasks, lr, weight_decay)
        self.previous: dict[str, float] | None = None
        self.c: float | None = None

    def _z(self) -> list[float]:
        return torch.softmax(self.param.detach(), 0).tolist()

    def scale(self, task: str, value: float) -> float:
        if self.c is None:
            return 1.0
        return self._z()[self.tasks.index(task)] / (self.c * (max(value, 0.0) + 1e-8))

    def update(self, losses: Mapping[str, float], counts: Mapping[str, int], epoch: int) -> None:
        now = {t: max(losses[t], 0.0) + 1e-8 for t in self.tasks}
        if self.previous is not None:
            delta = [math.log(self.previous[t]) - math.log(now[t]) for t in self.tasks]
            z = self._z()
            inner = sum(zi * di for zi, di in zip(z, delta))
            self._step([zi * (di - inner) for zi, di in zip(z, delta)])  # J_softmax^T delta
        self.previous = now
        self.c = sum(zi / now[t] for zi, t in zip(self._z(), self.tasks))

    def weights(self) -> dict[str, float]:
        return dict(zip(self.tasks, self._z()))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "previous": self.previous, "c": self.c}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.previous, self.c = state["previous"], state["c"]


LOSS_WEIGHTINGS = ("none", "uncertainty", "dwa", "famo")
NEEDS_EVERY_TASK = ("famo",)  # compares each task's loss between consecutive updates: combined steps only


def loss_weighting_conflict(loss_weighting: str, gradient_method: str, compromise: bool) -> str | None:
    """What ``loss_weighting`` must be instead, when it cannot work with the step kind (None: it can)."""
    if loss_weighting == "none":
        return None
    if gradient_method not in ("none", *SURGERY_METHODS):
        return (
            f"'none' with gradient_method {gradient_method!r} (a Gramian aggregator picks the task weights "
            f"itself; loss weighting composes with gradient_method none, {', '.join(SURGERY_METHODS)})"
        )
    if loss_weighting in NEEDS_EVERY_TASK and (gradient_method == "none" or compromise):
        return (
            f"not {loss_weighting!r} with single-task steps or compromise groups (it compares every task's loss "
            "between consecutive updates: use gradient_method sum, pcgrad or gradvac without compromise)"
        )
    return None


def make_loss_weighting(cfg) -> LossWeighting:
    """The loss weighting a phase config names (``loss_weighting``, ``loss_weighting_lr``, ``dwa_temperature``)."""
    tasks = list(cfg.tasks)
    if cfg.loss_weighting == "uncertainty":
        return UncertaintyWeighting(tasks, cfg.loss_weighting_lr)
    if cfg.loss_weighting == "dwa":
        return DynamicWeightAverage(tasks, cfg.dwa_temperature)
    if cfg.loss_weighting == "famo":
        return FAMO(tasks, cfg.loss_weighting_lr)
    return LossWeighting(tasks)


NO_LOSS_WEIGHTING = LossWeighting([])  # the steps' default: stateless, every multiplier 1
