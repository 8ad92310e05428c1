"""mtlib.results.verdicts: property tests of the verdict engine on simulated per-seed differences.

Every simulation draws from a seeded numpy generator and prints what it measured (``pytest -s`` shows it):
interval coverage at a true effect of 0 and of δ (normal differences, and with collapsed seeds), the family-wise
rate of false "holds" under the null with Holm over 13 claims, the power behind a confirmed no-difference claim
and behind the minimum detectable effect. Intervals are computed for all studies at once (vectorised); the
scipy permutation test runs per study on fewer of them."""

from __future__ import annotations

import gc
import json
import math

import numpy as np
import pytest
import yaml
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from mtlib.data.metrics import pearson
from mtlib.results import claims as claims_mod
from mtlib.experiments import hypotheses as h
from mtlib.results import verdicts as v
from mtlib.experiments.claims_file import Claim
from mtlib.results.scores import collapsed_tasks, dev_scores

STUDIES = 2000
DELTA = 0.01  # the default margin of params/claims.yaml
SD = 0.01
COLLAPSE_RATE, COLLAPSE_COST = 0.2, 0.25  # a collapsed run: STS r 0.75 -> 0 moves the dev mean by 0.25


def normal(rng, effect: float, n: int, studies: int = STUDIES, sd: float = SD) -> np.ndarray:
    return effect + sd * rng.standard_normal((studies, n))


def with_collapses(rng, effect: float, n: int, studies: int = STUDIES) -> tuple[np.ndarray, np.ndarray]:
    """Differences where either row's run collapses on a seed with the same chance (the rows differ by
    ``effect`` only): a collapse of the left run costs the difference 0.25, of the right one adds 0.25."""
    left = rng.random((studies, n)) < COLLAPSE_RATE
    right = rng.random((studies, n)) < COLLAPSE_RATE
    d = normal(rng, effect, n, studies) + COLLAPSE_COST * (right.astype(float) - left.astype(float))
    return d, left | right


def coverage(low, high, effect) -> float:
    return float(np.mean((low <= effect) & (effect <= high)))


@pytest.mark.parametrize("n", [3, 5, 10])
def test_t_interval_covers_the_true_effect(n):
    rng = np.random.default_rng(100 + n)
    for effect in (0.0, DELTA):
        d = normal(rng, effect, n)
        _, low, high = v.t_interval(d, 0.95)
        _, adj_low, adj_high = v.t_interval(d, 1 - 0.05 / 13)  # Holm's strictest level over 13 claims
        cov, adj = coverage(low, high, effect), coverage(adj_low, adj_high, effect)
        print(f"\npaired t, {n} seeds, effect {effect}: 95% interval covers {cov:.3f}, 1-0.05/13 interval {adj:.3f}")
        assert cov >= 0.94 and adj >= 0.99
        assert (high - low > 0).all()


@pytest.mark.parametrize("n", [7, 10])
def test_sign_flip_interval_covers_the_true_effect_with_collapsed_seeds(n):
    rng = np.random.default_rng(200 + n)
    for effect in (0.0, DELTA):
        d, collapsed = with_collapses(rng, effect, n)
        low, high = v.sign_flip_interval(d, 0.95)
        _, t_low, t_high = v.t_interval(d, 0.95)
        cov, t_cov = coverage(low, high, effect), coverage(t_low, t_high, effect)
        plain_low, plain_high = v.sign_flip_interval(normal(rng, effect, n), 0.95)
        plain = coverage(plain_low, plain_high, effect)
        print(
            f"\nsign-flip, {n} seeds, effect {effect}: {collapsed.any(axis=1).mean():.0%} of studies with a "
            f"collapse; 95% interval covers {cov:.3f} (the t-interval on the same data {t_cov:.3f}); "
            f"normal differences {plain:.3f}"
        )
        assert cov >= 0.94 and plain >= 0.94
        assert (high - low > 0).all()


def test_the_engine_picks_the_sign_flip_test_where_seeds_collapsed_and_its_p_matches_its_interval():
    rng = np.random.default_rng(3)
    d, collapsed = with_collapses(rng, 0.0, 10, studies=300)
    low, high = v.sign_flip_interval(d, 0.95)
    hyp = h.Hypothesis()
    agree, covered, used = 0, 0, 0
    for i in range(len(d)):
        ev = v.evidence(d[i], hyp, collapsed[i])
        assert ev.method == (v.SIGN_FLIP if collapsed[i].any() else v.T)
        assert ev.n_collapsed == collapsed[i].sum()
        if ev.method == v.SIGN_FLIP:
            used += 1
            lo, hi = ev.interval(0.95)
            assert (lo, hi) == pytest.approx((low[i], high[i]))
            covered += lo <= 0 <= hi
            # the test and its interval are one: "d > 0" rejected at 0.025 exactly when 0 lies below the interval
            agree += (ev.p <= 0.025) == (lo > 0)
    print(f"\nengine, 300 studies of 10 seeds: sign-flip used in {used}; its 95% interval covers {covered / used:.3f}")
    assert agree == used and used > 250


def test_holm_keeps_the_family_wise_rate_of_false_holds_below_5_percent(monkeypatch):
    # statsmodels' Holm calls gc.collect() on every call (~30-100 ms in a test process): not here, 1,000 times
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    # 13 claims, each at the edge of its null: directional at 0, non-superiority and equivalence at δ
    rng = np.random.default_rng(13)
    hyps = [h.Hypothesis()] * 7 + [h.Hypothesis(h.NON_SUPERIORITY, margin=DELTA)] * 5
    hyps += [h.Hypothesis(h.EQUIVALENCE, margin=DELTA)]
    truths = [0.0 if hyp.kind == h.DIRECTIONAL else DELTA for hyp in hyps]
    families = 1000
    draws = [normal(rng, t, 5, families) for t in truths]  # [claim][family, seed]
    false_holds, unadjusted = 0, 0
    for f in range(families):
        evidences = [v.evidence(draws[c][f], h) for c, h in enumerate(hyps)]
        decided = v.decide(evidences, alpha=0.05, power=None)
        false_holds += any(r["verdict"] == v.HOLDS for r in decided)
        unadjusted += any(ev.p < 0.025 for ev in evidences)
        assert all(r["family_size"] == 13 for r in decided)
    rate, raw = false_holds / families, unadjusted / families
    print(
        f"\nHolm over 13 claims at their null, {families} families: any false 'holds' {rate:.3f} (unadjusted {raw:.3f})"
    )
    assert rate < 0.05 and raw > 0.15


def test_holm_matches_statsmodels_and_orders_the_levels():
    p = [0.001, 0.02, math.nan, 0.004, 0.3]
    reject, adjusted, level = v.holm(p, alpha=0.05)
    rej, adj, _, _ = multipletests([0.001, 0.02, 0.004, 0.3], alpha=0.025, method="holm")
    assert list(reject[[0, 1, 3, 4]]) == list(rej) and adjusted[[0, 1, 3, 4]] == pytest.approx(adj)
    assert not reject[2] and math.isnan(adjusted[2]) and level[2] == 0.05 / 4
    assert list(level[[0, 3, 1, 4]]) == pytest.approx([0.05 / 4, 0.05 / 3, 0.05 / 2, 0.05])


def test_a_no_difference_claim_is_confirmed_when_the_seeds_suffice():
    # true effect 0, SD 0.005, δ = 0.01: ten seeds confirm "does not help" and "equivalent", within a family of 13
    rng = np.random.default_rng(10)
    d = normal(rng, 0.0, 10, sd=0.005)
    for hyp in (h.Hypothesis(h.NON_SUPERIORITY, margin=DELTA), h.Hypothesis(h.EQUIVALENCE, margin=DELTA)):
        p = v.t_pvalue(d, hyp)
        alone = float(np.mean(p < 0.025))
        share = float(np.mean(p < 0.025 / 13))  # Holm's strictest level: holds whatever the other 12 claims do
        print(
            f"\n{hyp.kind}, 10 seeds, SD 0.005, true effect 0: holds in {alone:.3f} of {STUDIES} studies alone, "
            f"{share:.3f} at the strictest Holm level of 13"
        )
        assert alone >= 0.95 and share >= 0.80  # at least the 80% power designs are planned for
    # "is worse than" (how the claims were read before) holds 2.5% of the time with no effect, at any seeds
    worse = float(np.mean(v.t_pvalue(d, h.Hypothesis(sign=-1)) < 0.025))
    print(f"'a < b' with no effect, 10 seeds: holds in {worse:.3f}")
    assert worse < 0.05
    one = claims_mod.verdict(d[0], kind="non_superiority", margin=DELTA)
    assert one["verdict"] == "holds" and one["ci_high"] < DELTA
    few = claims_mod.verdict([0.006, -0.005, 0.002], kind="non_superiority", margin=DELTA)  # 3 cannot resolve δ
    assert few["verdict"] == "below resolution" and few["mde"] > DELTA and few["seeds_needed"] > 3


def test_the_minimum_detectable_effect_is_found_80_percent_of_the_time():
    rng = np.random.default_rng(80)
    n, level = 6, 0.05 / 4
    mde = v.minimum_detectable_effect(SD, n, level)
    d = normal(rng, mde, n)
    found = float(np.mean(v.t_pvalue(d, h.Hypothesis()) < level / 2))
    print(f"\nMDE at {n} seeds, level {level}: {mde:.4f}; found in {found:.3f} of {STUDIES} studies (80% planned)")
    assert 0.76 <= found <= 0.84
    needed = v.seeds_needed(SD, DELTA, 0.05)
    power = TTestPower()
    assert power.power(DELTA / SD, needed, 0.025, alternative="larger") >= 0.8
    assert power.power(DELTA / SD, needed - 1, 0.025, alternative="larger") < 0.8
    assert v.seeds_needed(SD, 100 * SD, 0.05) == 2 and math.isnan(v.seeds_needed(SD, math.nan, 0.05))
    assert math.isnan(v.minimum_detectable_effect(0.0, 5, 0.05))


@pytest.mark.parametrize("kind,margin", [("directional", math.nan), ("non_superiority", DELTA), ("equivalence", DELTA)])
def test_identical_differences_never_give_a_zero_width_interval(kind, margin):
    for n in range(2, 6):  # too few seeds for the sign-flip test to decide: never holds
        for value in (0.0, 0.02, -0.3):
            r = claims_mod.verdict([value] * n, kind=kind, margin=margin)
            assert r["verdict"] != "holds" and r["method"] == v.SIGN_FLIP
            assert not (r["ci_high"] - r["ci_low"] <= 0), r  # NaN, infinite or positive: never zero
            assert not (r["adj_high"] - r["adj_low"] <= 0), r
    # ten identical score differences: the sign-flip test may decide; the interval is ± half a reported digit
    r = claims_mod.verdict([0.0] * 10, kind=kind, margin=margin, resolution=claims_mod.SCORE_RESOLUTION)
    assert r["ci_high"] - r["ci_low"] == pytest.approx(claims_mod.SCORE_RESOLUTION)
    assert r["verdict"] == ("holds" if kind != "directional" else "inconclusive")
    assert v.sign_flip_min_seeds(0.05) == 6 and v.sign_flip_min_seeds(0.05 / 13) == 10


def test_a_constant_sts_prediction_is_scored_zero_and_counted(tmp_path):
    gold = np.linspace(0, 5, 40)
    assert pearson(np.full(40, 2.5), gold) == 0.0
    old = {"dev": {"sst": 0.5, "para": 0.7, "sts": None}}  # before: NaN, written as null
    new = {"dev": {"sst": 0.5, "para": 0.7, "sts": 0.0}}
    fine = {"dev": {"sst": 0.5, "para": 0.7, "sts": 0.8}}
    assert collapsed_tasks(old) == collapsed_tasks(new) == ("sts",) and collapsed_tasks(fine) == ()
    assert dev_scores(old)["sts"] == 0.0
    rows = [{"id": r, "label": r, "notebook": "05_pals", "config": {}, "paper": {}} for r in ("a", "b")]
    rng = np.random.default_rng(7)
    for seed in range(1, 11):  # b collapses on seeds 2, 5 and 8: those seeds count, a constant prediction's r = 0
        for name, mean in (("a", 0.6), ("b", 0.55)):
            sts = 0.0 if name == "b" and seed % 3 == 2 else mean + 0.01 * rng.standard_normal()
            d = tmp_path / f"{name}-h" / f"seed{seed}"
            d.mkdir(parents=True)
            dev = {"sst": mean, "para": mean, "sts": sts}
            (d / "metrics.json").write_text(
                json.dumps({"name": name, "seed": seed, "dev": dev, "backbone": "minilm-l6"})
            )
            (d / "config.yaml").write_text(yaml.safe_dump({"name": name}))
    claim = Claim("collapse", "b collapses", "b", "<", "a", "mean")
    row = claims_mod.claims_table(tmp_path, claims=[claim], experiments=rows).iloc[0]
    assert row["n_seeds"] == 10 and row["n_collapsed"] == 3 and row["collapsed_seeds"] == [2, 5, 8]
    assert row["method"] == v.SIGN_FLIP and row["verdict"] == "holds"
    shown = claims_mod.formatted_claims(claims_mod.claims_table(tmp_path, claims=[claim], experiments=rows))
    assert shown.iloc[0]["Seeds"] == "10 (3 collapsed)"
