"""Gramian-based aggregators from torchjd (``torchjd==0.18.0``), through mtlib's buffer, Gram matrix and diagnostics.

Every method here picks a weight vector ``w`` from the ``T x T`` Gram matrix of the task gradients (the one
``GradientCombiner`` already computes in one pass over the buffer) and the update is ``w^T G``: the same
``[T] @ [T, D]`` product, row-sparse layout and conflict diagnostics as PCGrad. The weights come from torchjd's
``Weighting`` classes (``import torchjd.aggregation`` pulls in cvxpy, ~1 s: done on first use, not at import).
As coefficients, ``diag(w)``: ``project()`` then returns each task's weighted contribution ``w_t g_t``.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from mtlib.methods.gradients.combiners import GradientCombiner

__all__ = ["GramianAggregator", "UPGrad", "MGDA", "CAGrad", "NashMTL", "IMTLG", "AlignedMTL", "DualProj", "RLW"]


@functools.cache
def _torchjd():
    import torchjd.aggregation as aggregation  # lazy: cvxpy and quadprog load with it

    return aggregation


class GramianAggregator(GradientCombiner):
    """Shared plumbing: Gram matrix (float64, CPU) -> torchjd weighting -> ``diag(w)`` coefficients.

    Subclasses say which torchjd weighting they wrap (``make_weighting``); ``last_weights`` keeps the most
    recent weights for logging. Weights that come back non-finite (a solver failure on a degenerate
    Gramian) fall back to the plain sum for that update and are counted in ``fallbacks``.
    """

    paper = ""

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)
        self.weighting = self.make_weighting()
        self.last_weights: list[float] = [1.0] * num_tasks
        self.fallbacks = 0

    def make_weighting(self):
        raise NotImplementedError

    def weights(self, gram: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return self.weighting(gram)

    def coefficients(self, gram: list[list[float]], generator: torch.Generator | None) -> list[list[float]]:
        if not any(gram[i][i] > 0 for i in range(self.num_tasks)):
            weights = [1.0] * self.num_tasks  # every gradient is zero: so is any combination (solvers divide by 0)
        else:
            try:
                weights = self.weights(torch.tensor(gram, dtype=torch.float64), generator).tolist()
            except (ValueError, ArithmeticError, RuntimeError):  # a solver giving up on a degenerate Gramian
                weights = [math.nan]
        if len(weights) != self.num_tasks or not all(math.isfinite(w) for w in weights):
            self.fallbacks += 1
            weights = [1.0] * self.num_tasks
        self.last_weights = weights
        # "fired": tasks whose weight differs from the plain sum's 1 (a crude count, like PCGrad's projections)
        self.last_fired = sum(abs(w - 1.0) > 1e-9 for w in weights)
        return [[w if i == k else 0.0 for k in range(self.num_tasks)] for i, w in enumerate(weights)]


class UPGrad(GramianAggregator):
    """UPGrad: Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization" (arXiv 2406.16232).

    Each task gradient projected onto the dual cone of all of them (a QP, solved by quadprog), then averaged:
    the update never conflicts with any task, and equals the mean when no pair conflicts."""

    name = "upgrad"

    def make_weighting(self):
        return _torchjd().UPGradWeighting()


class MGDA(GramianAggregator):
    """MGDA: Désidéri 2012, "Multiple-gradient descent algorithm (MGDA) for multiobjective optimization";
    as Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization" (NeurIPS), Frank-Wolfe.

    The minimum-norm point of the convex hull of the task gradients: conflicts with no task."""

    name = "mgda"

    def make_weighting(self):
        return _torchjd().MGDAWeighting()


class CAGrad(GramianAggregator):
    """CAGrad: Liu et al. 2021, "Conflict-Averse Gradient Descent for Multi-task Learning" (NeurIPS 2021).

    The update maximises the worst task's improvement within a ball of radius ``c |g_0|`` around the mean
    gradient ``g_0`` (``c`` = ``cagrad_c``; the paper's 0.4). Solved by cvxpy/Clarabel in torchjd."""

    name = "cagrad"

    def __init__(self, num_tasks: int, c: float = 0.4) -> None:
        self.c = c
        super().__init__(num_tasks)

    def make_weighting(self):
        return _torchjd().CAGradWeighting(c=self.c)


class NashMTL(GramianAggregator):
    """Nash-MTL: Navon et al. 2022, "Multi-Task Learning as a Bargaining Game" (ICML 2022).

    Weights solving ``G^T G a = 1/a`` (the Nash bargaining solution) by torchjd's cvxpy/ECOS loop, update norm
    clipped at 1 (torchjd's ``max_norm``). torchjd's Nash-MTL takes the gradient matrix, of which it only uses
    the Gramian: it is given a ``T x T`` square root of the Gram matrix instead (same Gramian, same norms).
    Stateful (its previous weights warm-start the solver): kept in the checkpoint."""

    name = "nashmtl"

    def make_weighting(self):
        return _torchjd().NashMTL(n_tasks=self.num_tasks).weighting

    def weights(self, gram: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        eigenvalues, vectors = torch.linalg.eigh(gram)
        root = vectors * eigenvalues.clamp_min(0.0).sqrt()  # root @ root.T == gram
        with warnings.catch_warnings():  # cvxpy: "not DPP" on every solve; ECOS on a singular one
            warnings.simplefilter("ignore")
            return self.weighting(root)

    def state_dict(self) -> dict[str, Any]:
        w = self.weighting
        return {"prvs_alpha": [float(a) for a in w.prvs_alpha], "step": float(w.step)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        import numpy as np

        w = self.weighting
        w.prvs_alpha = np.asarray(state["prvs_alpha"], dtype=np.float32)
        w.step = float(state["step"])
        if w.step > 0:  # torchjd builds its cvxpy problem on the first call (step 0): rebuild it around the state
            w._init_optim_problem()


class IMTLG(GramianAggregator):
    """IMTL-G: Liu et al. 2021, "Towards Impartial Multi-task Learning" (ICLR 2021).

    Weights that make the update's projection onto every task's unit gradient equal (scale-invariant)."""

    name = "imtlg"

    def make_weighting(self):
        return _torchjd().IMTLGWeighting()


class AlignedMTL(GramianAggregator):
    """Aligned-MTL: Senushkin et al. 2023, "Independent Component Alignment for Multi-Task Learning" (CVPR 2023).

    Aligns the principal components of the gradient matrix (condition number 1) before averaging."""

    name = "alignedmtl"

    def make_weighting(self):
        return _torchjd().AlignedMTLWeighting()


class DualProj(GramianAggregator):
    """DualProj: Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for Continual Learning" (NeurIPS 2017).

    The mean gradient projected onto the dual cone of the task gradients (GEM's projection, quadprog)."""

    name = "dualproj"

    def make_weighting(self):
        return _torchjd().DualProjWeighting()


class RLW(GramianAggregator):
    """Random loss weighting (RLW): Lin et al. 2022, "Reasonable Effectiveness of Random Weighting: A Litmus
    Test for Multi-Task Learning" (TMLR). Weights = softmax of a standard normal draw, fresh every update.

    torchjd's ``RandomWeighting`` draws from the global RNG; here the draw is seeded from the step's own
    generator (saved in the checkpoint) inside a forked RNG, so it neither disturbs dropout nor breaks resume."""

    name = "rlw"

    def make_weighting(self):
        return _torchjd().RandomWeighting()

    def weights(self, gram: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.weighting(gram)  # it only reads the Gramian's shape, dtype and device


AGGREGATORS: dict[str, type[GramianAggregator]] = {
    cls.name: cls for cls in (UPGrad, MGDA, CAGrad, NashMTL, IMTLG, AlignedMTL, DualProj, RLW)
}
