"""Means over seeds with their 95% confidence intervals (Student t, ``scipy.stats.t``), as every results table
shows them. Verdicts on claims have their own tests (``mtlib.results.verdicts``)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (the two-sided 95% critical value)."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    return float(stats.t.ppf(0.975, df))


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """(mean, 95% CI half-width t * s / sqrt(n)); the half-width is NaN for fewer than two values."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) == 1:
        return float(x[0]), math.nan
    return float(x.mean()), t_quantile_975(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
