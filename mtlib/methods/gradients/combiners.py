"""Sum, PCGrad and Gradient Vaccine on a ``[T, D]`` float32 tensor of task gradients, and conflict diagnostics.

Row t is task t's gradient of the shared parameters, flattened; every method returns a ``[D]`` update.
PCGrad and GradVac only ever need inner products between task gradients, so they compute the ``T x T``
Gram matrix once (one pass over D), run the sequential per-pair rules on coefficient vectors
(``g_i' = sum_k C[i, k] g_k``) in float64 Python on the CPU, and finish with one ``[T] @ [T, D]``
product. No Python loop touches D; one device sync per update.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = ["GradientCombiner", "GradientSum", "PCGrad", "GradVac", "sum_gradients", "pcgrad", "conflict_stats"]


def _check_grads(grads: Tensor, num_tasks: int | None = None) -> None:
    if grads.dim() != 2:
        raise ValueError(f"grads must be a [T, D] tensor, got shape {tuple(grads.shape)}")
    if num_tasks is not None and grads.shape[0] != num_tasks:
        raise ValueError(f"expected {num_tasks} task gradients, got {grads.shape[0]}")


_GRAM_BLOCK = 8192


def _gram(grads: Tensor) -> list[list[float]]:
    """Inner products of all task pairs, as float64 Python numbers (the one device sync).

    A single float32 ``grads @ grads.T`` over D ~ 1e7..1e8 loses ~1e-3 relative accuracy (CPU BLAS
    accumulates long rows in float32), enough to misjudge a small cosine. So: per-block Grams with one
    batched matmul over strided views (no copy of the buffer), summed in float64.
    """
    num_tasks, dim = grads.shape
    blocks = dim // _GRAM_BLOCK
    gram = torch.zeros(num_tasks, num_tasks, dtype=torch.float64, device=grads.device)
    if blocks:
        blocked = grads[:, : blocks * _GRAM_BLOCK].unflatten(1, (blocks, _GRAM_BLOCK)).transpose(0, 1)
        gram += torch.bmm(blocked, blocked.transpose(1, 2)).sum(0, dtype=torch.float64)
    rest = grads[:, blocks * _GRAM_BLOCK :]
    gram += (rest @ rest.T).double()
    return gram.cpu().tolist()


def _others_in_random_order(i: int, num_tasks: int, generator: torch.Generator | None) -> list[int]:
    others = [j for j in range(num_tasks) if j != i]
    return [others[k] for k in torch.randperm(len(others), generator=generator).tolist()]


def _identity(n: int) -> list[list[float]]:
    return [[float(i == k) for k in range(n)] for i in range(n)]


def _dot(c: Sequence[float], gram: list[list[float]], j: int) -> float:
    """(sum_k c_k g_k) . g_j"""
    return sum(ck * gram[k][j] for k, ck in enumerate(c))


def _sq_norm(c: Sequence[float], gram: list[list[float]]) -> float:
    """|| sum_k c_k g_k ||^2"""
    return sum(ci * cj * gram[i][j] for i, ci in enumerate(c) for j, cj in enumerate(c))


class GradientCombiner:
    """Shared plumbing: validate ``[T, D]`` input, compute coefficients from the Gram matrix, apply them.

    Subclasses implement ``coefficients(gram, generator) -> C`` with ``g_i' = sum_k C[i][k] g_k``.
    ``last_fired`` counts the corrections applied in the most recent call (for logging).
    """

    name = "base"

    def __init__(self, num_tasks: int) -> None:
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        self.num_tasks = num_tasks
        self.last_fired = 0
        self.last_gram: list[list[float]] | None = None

    def coefficients(self, gram: list[list[float]], generator: torch.Generator | None) -> list[list[float]]:
        raise NotImplementedError

    def _coefficient_tensor(self, grads: Tensor, generator: torch.Generator | None) -> Tensor:
        _check_grads(grads, self.num_tasks)
        gram = _gram(grads)
        self.last_gram = gram  # reused by conflict_stats: one pass over the buffer, not two
        if not all(math.isfinite(x) for row in gram for x in row):
            # inf/nan (e.g. an fp16 overflow the GradScaler will skip): pass through, keep state clean.
            self.last_fired = 0
            coeffs = _identity(self.num_tasks)
        else:
            coeffs = self.coefficients(gram, generator)
        return torch.tensor(coeffs, dtype=grads.dtype, device=grads.device)

    def project(self, grads: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The corrected per-task gradients ``[T, D]`` (before summing); useful for analysis."""
        return self._coefficient_tensor(grads, generator) @ grads

    def __call__(self, grads: Tensor, generator: torch.Generator | None = None, out: Tensor | None = None) -> Tensor:
        # sum_i g_i' = (1^T C) G: one [T] @ [T, D] product, written into ``out`` when given (allocating a
        # fresh [D] vector each update costs more than the product itself on a CPU).
        weights = self._coefficient_tensor(grads, generator).sum(0)
        return torch.mv(grads.T, weights, out=out) if out is not None else weights @ grads

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class GradientSum(GradientCombiner):
    """Plain sum of the task gradients (what one backward of the summed losses gives)."""

    name = "sum"

    def coefficients(self, gram: list[list[float]], generator: torch.Generator | None) -> list[list[float]]:
        self.last_fired = 0
        return _identity(self.num_tasks)

    def __call__(self, grads: Tensor, generator: torch.Generator | None = None, out: Tensor | None = None) -> Tensor:
        _check_grads(grads, self.num_tasks)
        self.last_gram = None
        return torch.sum(grads, 0, out=out) if out is not None else grads.sum(0)  # no Gram matrix needed


class PCGrad(GradientCombiner):
    """PCGrad: Yu et al. 2020, "Gradient Surgery for Multi-Task Learning" (NeurIPS 2020).

    For each task i, visit the other tasks j in random order; when ``g_i' . g_j < 0`` remove the
    component of ``g_i'`` along the original ``g_j``. The update is the sum of the ``g_i'``
    (the original code's merge, docs/original.md §4). Zero-norm gradients are never projected against.
    """

    name = "pcgrad"

    def coefficients(self, gram: list[list[float]], generator: torch.Generator | None) -> list[list[float]]:
        n = self.num_tasks
        coeffs = _identity(n)
        fired = 0
        for i in range(n):
            for j in _others_in_random_order(i, n, generator):
                dot = _dot(coeffs[i], gram, j)
                if dot < 0 and gram[j][j] > 0:
                    coeffs[i][j] -= dot / gram[j][j]
                    fired += 1
        self.last_fired = fired
        return coeffs


class GradVac(GradientCombiner):
    """Gradient Vaccine: Wang et al. 2021, "Gradient Vaccine: Investigating and Improving Multi-task
    Optimization in Massively Multilingual Models" (ICLR 2021).

    Holds an EMA ``target[i][j]`` of the cosine similarity between tasks i and j (init 0). For each i and
    each other task j in random order, with ``phi = cos(g_i', g_j)`` and ``t = target[i][j]``: if phi < t,
    ``g_i' += g_j * |g_i'| (t sqrt(1-phi^2) - phi sqrt(1-t^2)) / (|g_j| sqrt(1-t^2))``, which sets
    cos(g_i', g_j) to exactly t. Applied to the whole flattened encoder, like the original code (the
    paper also has a per-layer variant). With t = 0 the correction is PCGrad's projection.

    ``update='every'`` (the paper) moves the EMA after every pair; ``update='on_fire'`` (the original
    code, docs/original.md §4) only when the correction fires, so the targets drift downward from 0.
    """

    name = "gradvac"

    def __init__(self, num_tasks: int, beta: float = 1e-2, update: Literal["every", "on_fire"] = "every") -> None:
        super().__init__(num_tasks)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        if update not in ("every", "on_fire"):
            raise ValueError(f"update must be 'every' or 'on_fire', got {update!r}")
        self.beta = beta
        self.update = update
        self.target = torch.zeros(num_tasks, num_tasks, dtype=torch.float64)

    def coefficients(self, gram: list[list[float]], generator: torch.Generator | None) -> list[list[float]]:
        n = self.num_tasks
        coeffs = _identity(n)
        target = self.target.tolist()
        fired = 0
        for i in range(n):
            for j in _others_in_random_order(i, n, generator):
                norm_i = math.sqrt(max(_sq_norm(coeffs[i], gram), 0.0))
                norm_j = math.sqrt(max(gram[j][j], 0.0))
                if norm_i == 0.0 or norm_j == 0.0:
                    continue  # no direction, no angle: leave both the gradient and the EMA alone
                phi = min(max(_dot(coeffs[i], gram, j) / (norm_i * norm_j), -1.0), 1.0)
                t = target[i][j]
                fire = phi < t
                if fire:
                    # phi < t <= 1 keeps sqrt(1-t^2) > 0 unless t == 1 exactly (only via a loaded state).
                    sin_t = math.sqrt(max(1.0 - t * t, 1e-12))
                    sin_phi = math.sqrt(max(1.0 - phi * phi, 0.0))
                    coeffs[i][j] += norm_i * (t * sin_phi - phi * sin_t) / (norm_j * sin_t)
                    fired += 1
                if fire or self.update == "every":
                    target[i][j] = (1.0 - self.beta) * t + self.beta * phi
        self.target = torch.tensor(target, dtype=torch.float64)
        self.last_fired = fired
        return coeffs

    def state_dict(self) -> dict[str, Any]:
        return {"target": self.target.clone(), "beta": self.beta, "update": self.update}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        target = torch.as_tensor(state["target"], dtype=torch.float64).cpu()
        if target.shape != (self.num_tasks, self.num_tasks):
            raise ValueError(f"target must be {self.num_tasks}x{self.num_tasks}, got {tuple(target.shape)}")
        self.target = target.clone()
        self.beta = float(state.get("beta", self.beta))
        self.update = state.get("update", self.update)


GRADVAC_UPDATES = ("every", "on_fire")


def sum_gradients(grads: Tensor) -> Tensor:
    """Plain sum of a ``[T, D]`` tensor of task gradients."""
    _check_grads(grads)
    return grads.sum(0)


def pcgrad(grads: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """PCGrad update (see ``PCGrad``). ``generator`` is a CPU generator fixing the visiting order."""
    return PCGrad(grads.shape[0] if grads.dim() == 2 else 1)(grads, generator)


def conflict_stats(
    grads: Tensor, names: Sequence[str] | None = None, gram: list[list[float]] | None = None
) -> dict[str, Any]:
    """Angles between task gradients from one Gram matrix, as JSON-ready Python numbers.

    Returns ``cosine`` (T x T nested list), ``pairs`` ({"sst|para": cos} for i < j), ``conflict_share``
    (fraction of pairs with cos < 0), and ``norms`` ({name: L2 norm}). Zero-norm rows get cos 0.
    """
    _check_grads(grads)
    num_tasks = grads.shape[0]
    names = [str(i) for i in range(num_tasks)] if names is None else list(names)
    if len(names) != num_tasks:
        raise ValueError(f"got {len(names)} names for {num_tasks} task gradients")
    gram = _gram(grads) if gram is None else gram  # a combiner's ``last_gram`` of the same grads
    norms = [math.sqrt(max(gram[i][i], 0.0)) for i in range(num_tasks)]
    cosine = [
        [gram[i][j] / (norms[i] * norms[j]) if norms[i] > 0 and norms[j] > 0 else 0.0 for j in range(num_tasks)]
        for i in range(num_tasks)
    ]
    pairs = {f"{names[i]}|{names[j]}": cosine[i][j] for i in range(num_tasks) for j in range(i + 1, num_tasks)}
    share = sum(c < 0 for c in pairs.values()) / len(pairs) if pairs else 0.0
    return {"cosine": cosine, "pairs": pairs, "conflict_share": share, "norms": dict(zip(names, norms))}
