"""Combining per-task gradients of the shared encoder into one update.

- ``buffer``: ``TaskGradients``, the preallocated ``[T, D]`` buffer the trainer's backward passes fill
  (with the word-embedding table kept row-sparse) and the update written back to ``.grad``.
- ``combiners``: sum, PCGrad, GradVac on a ``[T, D]`` tensor, from one Gram matrix; conflict diagnostics.
- ``aggregators``: torchjd's Gramian weightings (UPGrad, MGDA, CAGrad, Nash-MTL, IMTL-G, Aligned-MTL, DualProj,
  RLW) on the same Gram matrix; ``methods``: every method by name (``make_combiner``).
- ``compromise``: the Gradient Compromise loss divisors and their beta schedule (docs/original.md §5).
"""

from mtlib.methods.gradients.buffer import TaskGradients
from mtlib.methods.gradients.combiners import (
    GradientCombiner,
    GradientSum,
    GradVac,
    PCGrad,
    conflict_stats,
    pcgrad,
    sum_gradients,
)
from mtlib.methods.gradients.methods import COMBINERS, make_combiner
from mtlib.methods.gradients.compromise import compromise_beta, compromise_weights

__all__ = [
    "TaskGradients",
    "GradientCombiner",
    "GradientSum",
    "PCGrad",
    "GradVac",
    "COMBINERS",
    "sum_gradients",
    "pcgrad",
    "conflict_stats",
    "compromise_weights",
    "compromise_beta",
    "make_combiner",
]
