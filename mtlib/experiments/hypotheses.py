"""What a claim of params/claims.yaml says: its kind and the hypothesis about the paired difference
d = left - right it tests (``mtlib.results.verdicts`` decides it from the runs).

- ``directional`` (``a > b`` / ``a < b``): d > 0 (or d < 0);
- ``non_superiority`` (``a <= b``, "a does not help"): d < δ, a is not better than b by the margin δ or more;
- ``equivalence`` (``a ~ b``): -δ < d < δ (two one-sided tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DIRECTIONAL, NON_SUPERIORITY, EQUIVALENCE = "directional", "non_superiority", "equivalence"
KINDS = (DIRECTIONAL, NON_SUPERIORITY, EQUIVALENCE)
OPERATORS = {DIRECTIONAL: (">", "<"), NON_SUPERIORITY: ("<=",), EQUIVALENCE: ("~",)}  # compare: "<row> OP <row>"
NEEDS_MARGIN = (NON_SUPERIORITY, EQUIVALENCE)


@dataclass(frozen=True)
class Hypothesis:
    """What a claim says about the paired difference d = left - right."""

    kind: str = DIRECTIONAL
    sign: int = 1  # directional: +1 claims d > 0, -1 claims d < 0
    margin: float = math.nan  # δ > 0 for non_superiority and equivalence

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown claim kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.kind == DIRECTIONAL and self.sign not in (1, -1):
            raise ValueError(f"a directional claim has sign +1 or -1, got {self.sign!r}")
        if self.kind in NEEDS_MARGIN and not (math.isfinite(self.margin) and self.margin > 0):
            raise ValueError(f"a {self.kind} claim needs a margin > 0, got {self.margin!r}")

    def nulls(self) -> list[tuple[float, str]]:
        """The one-sided tests whose rejection makes the claim hold: (boundary θ, alternative)."""
        if self.kind == DIRECTIONAL:
            return [(0.0, "greater" if self.sign > 0 else "less")]
        if self.kind == NON_SUPERIORITY:
            return [(self.margin, "less")]
        return [(-self.margin, "greater"), (self.margin, "less")]

    def holds_region(self, low, high):
        """Whether an interval [low, high] lies wholly in the claimed region (arrays broadcast)."""
        if self.kind == DIRECTIONAL:
            return low > 0 if self.sign > 0 else high < 0
        if self.kind == NON_SUPERIORITY:
            return high < self.margin
        return (low > -self.margin) & (high < self.margin)

    def fails_region(self, low, high):
        """Whether an interval lies wholly where the claim is false and by more than the margin, if any."""
        if self.kind == DIRECTIONAL:
            return high < 0 if self.sign > 0 else low > 0
        if self.kind == NON_SUPERIORITY:
            return low > self.margin
        return (low > self.margin) | (high < -self.margin)

    def claimed_size(self, paper_difference: float = math.nan) -> float:
        """The size the design must resolve: δ for a margin claim, the paper's |difference| otherwise."""
        return self.margin if self.kind in NEEDS_MARGIN else abs(paper_difference)
