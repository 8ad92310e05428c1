"""The statistics of a verdict: a claim about paired per-seed differences, tested, adjusted and sized.

A claim is a hypothesis about d = left - right (runs paired by seed), of one of three kinds:

- ``directional`` (``a > b`` / ``a < b``): d > 0 (or d < 0);
- ``non_superiority`` (``a <= b``, "a does not help"): d < δ, a is not better than b by the margin δ or more;
- ``equivalence`` (``a ~ b``): -δ < d < δ, two one-sided tests (TOST; Schuirmann 1987).

Each claim is a one-sided test of "the claim is false" (d ≤ 0; d ≥ δ; |d| ≥ δ) at level α/2 = 0.025, so it
holds exactly when its two-sided 95% interval lies wholly in the claimed region (Lakens 2017, "Equivalence
tests", SPPS 8: 355; the interval is then the 1 - α one, more conservative than the 1 - 2α interval usual with TOST).

- **The test.** The paired t-test and t-interval (``scipy.stats.t``) where every seed trained normally; a
  sign-flip permutation test (``scipy.stats.permutation_test``, ``permutation_type="samples"``: each
  difference's sign flipped, exact up to 16 seeds) where a seed collapsed, the metric is discrete
  (``examples_to_target`` moves in whole epochs) or all differences are identical (no spread to measure).
  Its interval is the test inverted (Hartigan 1969, "Using subsample values as typical values", JASA 64: the
  k-th smallest and largest of the 2^n - 1 subset means, k = floor(α/2 · 2^n)): exact for differences
  symmetric about their mean, which a collapse in either row keeps when both rows collapse alike. With
  2^-n > α/2 no interval exists (six seeds at α = 0.05; more at an adjusted level): the claim cannot hold.
- **Multiplicity.** The claims of one table are one family: their one-sided p-values are Holm-adjusted
  (``statsmodels.stats.multitest.multipletests``, Holm 1979), a claim holds when its adjusted p < α/2, and its
  adjusted interval is drawn at Holm's level for its rank, α / (m - rank + 1) (two-sided).
- **Fails** when the adjusted interval lies wholly in the opposite region (d < 0 for d > 0; d > δ for
  non-superiority; wholly outside ±δ for equivalence).
- **Power.** The minimum detectable effect (MDE) at the seeds run: the effect the paired t-test finds with 80%
  power at the claim's adjusted two-sided level, times the measured SD of the differences
  (``statsmodels.stats.power.TTestPower``, computed one-sided at half the level: the other tail holds < 1e-6
  of the power, and scipy's noncentral t returns NaN deep in it). **Below resolution** when the claim is
  neither held nor refuted and the MDE exceeds the claimed size (the paper's difference for a directional
  claim, δ for a margin claim): this design could not have seen it. Seeds needed: the paired t-test's sample
  size for the claimed size at the same level and power. For a sign-flip claim both are the t-test's figures
  (an approximation), the MDE infinite and the seeds at least ``sign_flip_min_seeds`` where that test cannot
  reach its level.
- **No zero-width interval.** Identical differences go to the sign-flip test, whose interval (a point) is then
  widened by ± half the metric's resolution q (the step it moves in: a value on a grid of step q stands for
  ±q/2), and which decides nothing below six seeds.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from mtlib.experiments.hypotheses import DIRECTIONAL, EQUIVALENCE, NON_SUPERIORITY, Hypothesis

HOLDS, FAILS, INCONCLUSIVE, BELOW_RESOLUTION = "holds", "fails", "inconclusive", "below resolution"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, BELOW_RESOLUTION)
ALPHA = 0.05  # two-sided: each claim's one-sided test runs at ALPHA / 2, its interval is the 1 - ALPHA one
POWER = 0.80
T, SIGN_FLIP = "paired t", "sign-flip permutation"
EXACT_SEEDS = 16  # the sign-flip test and its interval enumerate all 2^n sign patterns up to here
_RANDOM_PATTERNS = 2**16  # beyond: this many random patterns (fixed generator), the identity included


# ---------------------------------------------------------------- the paired t (vectorised over studies)


def _moments(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    mean = d.mean(axis=-1)
    se = d.std(axis=-1, ddof=1) / math.sqrt(n) if n >= 2 else np.full(mean.shape, math.nan)
    return mean, se, n


def t_interval(d, level: float = 1 - ALPHA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) of the two-sided ``level`` paired t-interval over the last axis (NaN below 2 seeds)."""
    mean, se, n = _moments(d)
    if n < 2:
        return mean, np.full(mean.shape, math.nan), np.full(mean.shape, math.nan)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * se
    return mean, mean - half, mean + half


def t_pvalue(d, hypothesis: Hypothesis) -> np.ndarray:
    """The one-sided p-value of the claim's test (the largest of TOST's two) over the last axis."""
    mean, se, n = _moments(d)
    if n < 2:
        return np.full(mean.shape, math.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ps = [
            stats.t.sf((mean - theta) / se, n - 1) if alt == "greater" else stats.t.cdf((mean - theta) / se, n - 1)
            for theta, alt in hypothesis.nulls()
        ]
    return np.maximum.reduce(ps) if len(ps) > 1 else ps[0]


# ---------------------------------------------------------------- the sign-flip permutation test


@lru_cache(maxsize=32)
def _subset_weights(n: int) -> np.ndarray:
    """[patterns, n]: each nonempty subset S (all of them up to EXACT_SEEDS seeds, else random) as 1/|S| weights."""
    if n <= EXACT_SEEDS:
        codes = np.arange(1, 2**n)
        member = ((codes[:, None] >> np.arange(n)) & 1).astype(float)
    else:
        member = np.random.default_rng(0).integers(0, 2, size=(_RANDOM_PATTERNS - 1, n)).astype(float)
        member = member[member.sum(axis=1) > 0]
    return member / member.sum(axis=1, keepdims=True)


def sign_flip_patterns(n: int) -> int:
    """How many sign patterns the test counts (the identity included): 2^n, or the random draw's size."""
    return 2**n if n <= EXACT_SEEDS else len(_subset_weights(n)) + 1


def sign_flip_interval(d, level: float = 1 - ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """(low, high): the sign-flip test of "mean = θ" inverted at two-sided ``level`` (over the last axis).

    The test of θ against "greater" keeps θ iff 1 + #{subset means ≤ θ} > (α/2)·2^n, so the kept θ run from
    the k-th smallest subset mean to the k-th largest, k = floor(α/2 · 2^n); k = 0: (-inf, inf)."""
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    if n == 0:
        return np.full(d.shape[:-1], math.nan), np.full(d.shape[:-1], math.nan)
    k = math.floor((1 - level) / 2 * sign_flip_patterns(n) + 1e-9)
    if k == 0:
        return np.full(d.shape[:-1], -math.inf), np.full(d.shape[:-1], math.inf)
    means = np.sort(d @ _subset_weights(n).T, axis=-1)
    return means[..., k - 1], means[..., -k]


def sign_flip_min_seeds(level: float) -> int:
    """The fewest seeds whose sign-flip test can reach the one-sided level/2 (2^-n ≤ level/2)."""
    return max(1, math.ceil(math.log2(2 / level) - 1e-9))


def sign_flip_pvalue(d: Sequence[float], hypothesis: Hypothesis) -> float:
    """The one-sided p-value of the claim's sign-flip test (``scipy.stats.permutation_test``; TOST: the larger)."""
    d = np.asarray(d, dtype=float)
    ps = []
    for theta, alt in hypothesis.nulls():
        res = stats.permutation_test(
            (d - theta,),
            lambda x, axis: np.mean(x, axis=axis),
            permutation_type="samples",
            alternative=alt,
            vectorized=True,
            n_resamples=_RANDOM_PATTERNS - 1 if len(d) > EXACT_SEEDS else 2**EXACT_SEEDS,
            rng=np.random.default_rng(0),
        )
        ps.append(float(res.pvalue))
    return max(ps)


# ---------------------------------------------------------------- one claim's evidence


@dataclass
class Evidence:
    """The paired differences of one claim and its unadjusted test. Build it with ``evidence``."""

    hypothesis: Hypothesis
    differences: np.ndarray
    method: str  # T, SIGN_FLIP, or "" with fewer than two seeds
    p: float  # one-sided p-value of the claim's test (NaN below two seeds)
    n_collapsed: int = 0
    resolution: float = 0.0
    why_method: str = ""

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return float(self.differences.mean()) if self.n else math.nan

    @property
    def sd(self) -> float:
        return float(self.differences.std(ddof=1)) if self.n >= 2 else math.nan

    @property
    def no_spread(self) -> bool:
        return self.n >= 2 and float(np.ptp(self.differences)) <= 1e-12 * max(
            1.0, float(np.abs(self.differences).max())
        )

    def interval(self, level: float = 1 - ALPHA) -> tuple[float, float]:
        """The two-sided ``level`` interval of the mean difference by this claim's method (never zero-width)."""
        if self.n < 2:
            return math.nan, math.nan
        if self.method == T:
            _, low, high = t_interval(self.differences, level)
            return float(low), float(high)
        low, high = (float(x) for x in sign_flip_interval(self.differences, level))
        if high - low <= 1e-12 * max(1.0, abs(low), abs(high)):  # identical differences: no spread measured;
            low, high = low - self.resolution / 2, high + self.resolution / 2  # a value on a grid of step q is ±q/2
        return low, high

    def reachable(self, level: float) -> bool:
        """Whether the test can reach the one-sided level/2 at all with these seeds (the sign-flip test cannot
        below ``sign_flip_min_seeds``)."""
        return self.n >= 2 and (self.method == T or self.n >= sign_flip_min_seeds(level))


def evidence(
    differences: Sequence[float],
    hypothesis: Hypothesis,
    collapsed: Sequence[bool] | None = None,
    discrete: bool = False,
    resolution: float = 0.0,
) -> Evidence:
    """A claim's unadjusted test from its per-seed differences (non-finite ones are unpaired: dropped).

    ``collapsed``: per seed, whether a run of the pair collapsed (a constant prediction); ``discrete``: the metric
    moves in steps of ``resolution`` (e.g. examples_to_target, one epoch). Either, or identical differences, makes
    the sign-flip permutation test decide instead of the t-test."""
    d = np.asarray(list(differences), dtype=float).ravel()
    flags = np.zeros(d.shape, dtype=bool) if collapsed is None else np.asarray(list(collapsed), dtype=bool)
    if flags.shape != d.shape:
        raise ValueError(f"{len(flags)} collapse flags for {len(d)} differences")
    keep = np.isfinite(d)
    d, flags = d[keep], flags[keep]
    ev = Evidence(hypothesis, d, "", math.nan, int(flags.sum()), float(resolution))
    if ev.n < 2:
        return ev
    reasons = [
        why
        for why, yes in (
            (f"{ev.n_collapsed} seed(s) collapsed", ev.n_collapsed > 0),
            ("a discrete metric", discrete),
            ("identical differences", ev.no_spread),
        )
        if yes
    ]
    if reasons:
        ev.method, ev.why_method, ev.p = SIGN_FLIP, "; ".join(reasons), sign_flip_pvalue(d, hypothesis)
    else:
        ev.method, ev.p = T, float(t_pvalue(d, hypothesis))
    return ev


# ---------------------------------------------------------------- power


def minimum_detectable_effect(sd: float, n: int, level: float, power: float = POWER) -> float:
    """The smallest true mean difference the paired t-test at two-sided ``level`` finds with ``power`` from
    ``n`` seeds whose differences have SD ``sd`` (NaN without an SD)."""
    if n < 2 or not math.isfinite(sd) or sd <= 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        es = TTestPower().solve_power(effect_size=None, nobs=n, alpha=level / 2, power=power, alternative="larger")
    return float(es) * sd if es is not None and math.isfinite(es) else math.nan


def seeds_needed(sd: float, effect: float, level: float, power: float = POWER) -> float:
    """Paired seeds the t-test at two-sided ``level`` needs to find a true difference ``effect`` with ``power``
    (NaN without an SD or an effect)."""
    if not (math.isfinite(sd) and sd > 0 and math.isfinite(effect) and effect > 0):
        return math.nan
    solver, es = TTestPower(), effect / sd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if solver.power(effect_size=es, nobs=2, alpha=level / 2, alternative="larger") >= power:
            return 2
        n = solver.solve_power(effect_size=es, nobs=None, alpha=level / 2, power=power, alternative="larger")
    return float(math.ceil(n - 1e-9)) if n is not None and math.isfinite(n) else math.nan


# ---------------------------------------------------------------- a family of claims


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reject, adjusted p, two-sided level of each claim's rank) for one-sided p-values at ``alpha``/2 each.

    NaN p-values (claims with fewer than two seeds) are outside the family: not rejected, adjusted p NaN,
    level alpha / m (Holm's strictest)."""
    p = np.asarray(pvalues, dtype=float)
    tested = np.flatnonzero(np.isfinite(p))
    m = len(tested)
    reject = np.zeros(p.shape, dtype=bool)
    adjusted = np.full(p.shape, math.nan)
    level = np.full(p.shape, alpha / max(m, 1))
    if m:
        rej, adj, _, _ = multipletests(p[tested], alpha=alpha / 2, method="holm")
        reject[tested], adjusted[tested] = rej, adj
        order = tested[np.argsort(p[tested], kind="stable")]
        level[order] = alpha / (m - np.arange(m))
    return reject, adjusted, level


def decide(
    evidences: Sequence[Evidence],
    claimed: Sequence[float] | None = None,
    alpha: float = ALPHA,
    power: float | None = POWER,
) -> list[dict]:
    """The verdicts of one family of claims (Holm across them), one dict per claim, in order.

    ``claimed``: each claim's size to resolve (default ``Hypothesis.claimed_size()``: δ, or NaN: unknown). ``power=None``
    skips the power columns (fast, for simulations). Keys: n_seeds, n_collapsed, difference, sd, method,
    ci_low, ci_high (unadjusted 1 - alpha), p_value (one-sided), family_size, level_adjusted (two-sided),
    p_adjusted, adj_low, adj_high, claimed_size, mde, seeds_needed, verdict, reason."""
    claimed = [ev.hypothesis.claimed_size() for ev in evidences] if claimed is None else list(claimed)
    reject, p_adj, levels = holm([ev.p for ev in evidences], alpha)
    m = int(sum(math.isfinite(ev.p) for ev in evidences))
    out = []
    for i, ev in enumerate(evidences):
        level = float(levels[i])
        low, high = ev.interval(1 - alpha)
        adj_low, adj_high = ev.interval(1 - level)
        rec = {
            "n_seeds": ev.n,
            "n_collapsed": ev.n_collapsed,
            "difference": ev.mean,
            "sd": ev.sd,
            "method": ev.method,
            "ci_low": low,
            "ci_high": high,
            "p_value": ev.p,
            "family_size": m,
            "level_adjusted": level,
            "p_adjusted": float(p_adj[i]),
            "adj_low": adj_low,
            "adj_high": adj_high,
            "claimed_size": float(claimed[i]),
            "mde": math.nan,
            "seeds_needed": math.nan,
        }
        if power is not None and ev.n >= 2:
            rec["mde"] = minimum_detectable_effect(ev.sd, ev.n, level, power) if ev.reachable(level) else math.inf
            rec["seeds_needed"] = seeds_needed(ev.sd, claimed[i], level, power)
            if ev.method == SIGN_FLIP and math.isfinite(rec["seeds_needed"]):
                rec["seeds_needed"] = float(max(rec["seeds_needed"], sign_flip_min_seeds(level)))
        rec["verdict"], rec["reason"] = _verdict(ev, rec, bool(reject[i]), alpha)
        out.append(rec)
    return out


def _verdict(ev: Evidence, rec: dict, rejected: bool, alpha: float) -> tuple[str, str]:
    hyp, level = ev.hypothesis, rec["level_adjusted"]
    if ev.n == 0:
        return INCONCLUSIVE, "no paired runs"
    if ev.n == 1:
        return INCONCLUSIVE, "one seed: no interval"
    family = f"Holm, family of {rec['family_size']}"
    if rejected:
        return HOLDS, f"adjusted p {rec['p_adjusted']:.2g} < {alpha / 2:g} ({family}): interval in the claimed region"
    if hyp.fails_region(rec["adj_low"], rec["adj_high"]):
        where = {
            DIRECTIONAL: "on the other side of 0",
            NON_SUPERIORITY: f"above the margin {hyp.margin:g}: left is better",
            EQUIVALENCE: f"outside \u00b1{hyp.margin:g}",
        }[hyp.kind]
        return FAILS, f"adjusted interval wholly {where} ({family})"
    if not ev.reachable(level):
        short = (
            f"{ev.n} seeds: the sign-flip test cannot reach p < {level / 2:.2g} "
            f"(needs \u2265 {sign_flip_min_seeds(level)})"
        )
        return (BELOW_RESOLUTION if math.isfinite(rec["claimed_size"]) else INCONCLUSIVE), short
    mde, size = rec["mde"], rec["claimed_size"]
    if math.isfinite(size) and math.isfinite(mde) and mde > size:
        need = rec["seeds_needed"]
        more = f"; ~{need:.0f} seeds needed" if math.isfinite(need) else ""
        return BELOW_RESOLUTION, f"detectable {_g(mde)} > claimed {_g(size)} at {ev.n} seeds{more}"
    if hyp.kind == DIRECTIONAL:
        spans = "adjusted interval contains 0"
    elif hyp.kind == NON_SUPERIORITY:
        spans = f"adjusted interval reaches the margin {hyp.margin:g}"
    else:
        spans = f"adjusted interval crosses \u00b1{hyp.margin:g}"
    if hyp.holds_region(rec["adj_low"], rec["adj_high"]):
        spans = "Holm stopped at a claim with a smaller p"  # its rank's interval clears, an earlier one did not
    return INCONCLUSIVE, f"{spans} ({family})"


def _g(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
