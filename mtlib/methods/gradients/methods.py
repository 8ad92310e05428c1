"""Every gradient method by name: the registry the config's ``gradient_method`` values and ``make_combiner`` read."""

from __future__ import annotations

import inspect
from typing import Any

from mtlib.methods.gradients.aggregators import AGGREGATORS
from mtlib.methods.gradients.combiners import GradientCombiner, GradientSum, GradVac, PCGrad

__all__ = ["COMBINERS", "GRADIENT_METHODS", "SURGERY_METHODS", "make_combiner"]

# sum: the control (every task's batch, no surgery); pcgrad/gradvac: the paper's; the rest: torchjd's Gramian weightings.
COMBINERS: dict[str, type[GradientCombiner]] = {"sum": GradientSum, "pcgrad": PCGrad, "gradvac": GradVac, **AGGREGATORS}
GRADIENT_METHODS = ("none", *COMBINERS)  # none: single-task steps
SURGERY_METHODS = ("sum", "pcgrad", "gradvac")  # the ones that leave each task's scale to the loss (see loss_weighting)


def _options(cls: type[GradientCombiner]) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "num_tasks"}


def make_combiner(name: str, num_tasks: int, **kwargs: Any) -> GradientCombiner:
    """Build a combiner by name; every one is called as ``combiner(grads, generator=None) -> [D]``.

    Options of other methods (e.g. GradVac's ``beta`` given to ``pcgrad``) are ignored, so a trainer
    can pass its whole config; an option no method knows raises ``ValueError``.
    """
    if name not in COMBINERS:
        raise ValueError(f"unknown gradient method {name!r}; allowed: {', '.join(sorted(COMBINERS))}")
    known = set().union(*(_options(cls) for cls in COMBINERS.values()))
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"unknown gradient method option(s) {unknown}; allowed: {', '.join(sorted(known))}")
    cls = COMBINERS[name]
    return cls(num_tasks, **{key: value for key, value in kwargs.items() if key in _options(cls)})
