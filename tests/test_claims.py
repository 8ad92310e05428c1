"""mtlib.results.claims: verdicts from synthetic runs (win, loss, CI over 0, one seed, speed), claims.yaml checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from mtlib.config.types import ConfigError
from mtlib.results import claims as claims_mod
from mtlib.results import intervals
from mtlib.experiments.claims_file import Claim, load_claims
from mtlib.experiments.rows import load_experiments

ROWS = [
    {
        "id": r,
        "label": r,
        "notebook": "02_baselines",
        "config": {},
        "paper": {"sst": s, "para": p, "sts": t, "mean": (s + p + t) / 3},
    }
    for r, s, p, t in [("a", 0.5, 0.8, 0.8), ("b", 0.4, 0.7, 0.6), ("c", 0.5, 0.8, 0.7)]
]


def run(out: Path, name: str, seed: int, mean: float, evals: list[tuple[int, float]] = ()) -> Path:
    """A finished run whose three dev scores all equal ``mean`` (so its plain mean is ``mean``)."""
    d = out / f"{name}-h{seed}" / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(
        json.dumps({"name": name, "seed": seed, "config_hash": "h", "dev": {"sst": mean, "para": mean, "sts": mean}})
    )
    (d / "config.yaml").write_text(yaml.safe_dump({"name": name}))
    (d / "history.jsonl").write_text(
        "".join(json.dumps({"type": "eval", "examples_seen": x, "mean": m}) + "\n" for x, m in evals)
    )
    return d


def table_of(out: Path, *claims: Claim):
    return claims_mod.claims_table(out, claims=list(claims), experiments=ROWS).set_index("id")


def test_verdict_rules():
    win = claims_mod.verdict([0.10, 0.12, 0.11], +1)
    assert win["verdict"] == "holds" and win["n_seeds"] == 3 and win["difference"] == pytest.approx(0.11)
    half = intervals.t_quantile_975(2) * 0.01 / math.sqrt(3)  # t(2) * sd / sqrt(n), sd of 0.10, 0.11, 0.12 = 0.01
    assert (win["ci_low"], win["ci_high"]) == pytest.approx((0.11 - half, 0.11 + half))
    assert claims_mod.verdict([0.10, 0.12, 0.11], -1)["verdict"] == "fails"  # a clear win refutes "left < right"
    assert claims_mod.verdict([-0.10, -0.12, -0.11], -1)["verdict"] == "holds"
    assert claims_mod.verdict([-0.10, -0.12], -1)["verdict"] == "inconclusive"  # two seeds: t(1) = 12.7, wide
    spans = claims_mod.verdict([0.05, -0.04, 0.02], +1)
    assert spans["verdict"] == "inconclusive" and spans["ci_low"] < 0 < spans["ci_high"]
    one = claims_mod.verdict([0.3], +1)
    assert one["verdict"] == "inconclusive" and one["difference"] == 0.3 and math.isnan(one["ci_low"])
    none = claims_mod.verdict([], +1)
    assert none["verdict"] == "inconclusive" and none["n_seeds"] == 0
    assert claims_mod.verdict([0.0, 0.0], +1)["verdict"] == "inconclusive"  # identical rows: no difference
    assert claims_mod.verdict([math.nan, 0.1, 0.2], +1)["n_seeds"] == 2  # an unpaired seed does not count


def test_claims_table_pairs_runs_by_seed(tmp_path):
    for seed, (a, b, c) in {1: (0.70, 0.60, 0.69), 2: (0.80, 0.71, 0.78), 3: (0.75, 0.64, 0.77)}.items():
        run(tmp_path, "a", seed, a), run(tmp_path, "b", seed, b), run(tmp_path, "c", seed, c)
    run(tmp_path, "a", 4, 0.10)  # no partner of seed 4 in b: left out, not paired with anything
    table = table_of(
        tmp_path,
        Claim("win", "a beats b", "a", ">", "b", "mean"),
        Claim("loss", "b beats a", "b", ">", "a", "sts"),
        Claim("noise", "a beats c", "a", ">", "c", "mean"),
    )
    win = table.loc["win"]
    assert win["verdict"] == "holds" and win["n_seeds"] == 3 and win["seeds"] == [1, 2, 3]
    assert win["difference"] == pytest.approx((0.10 + 0.09 + 0.11) / 3)
    assert win["paper_difference"] == pytest.approx(ROWS[0]["paper"]["mean"] - ROWS[1]["paper"]["mean"])
    assert table.loc["loss", "verdict"] == "fails"
    assert table.loc["loss", "paper_difference"] == pytest.approx(0.6 - 0.8)
    noise = table.loc["noise"]
    assert noise["verdict"] == "inconclusive" and noise["ci_low"] < 0 < noise["ci_high"]
    md = claims_mod.claims_markdown(table.reset_index())
    assert "| a beats b | a > b | dev mean | 3 | +0.100 [" in md and "1 holds, 1 fails, 1 inconclusive" in md


def test_claims_table_one_seed_and_no_runs(tmp_path):
    run(tmp_path, "a", 1, 0.7), run(tmp_path, "b", 1, 0.5)
    table = table_of(
        tmp_path, Claim("one", "a beats b", "a", ">", "b", "mean"), Claim("none", "a beats c", "a", ">", "c", "mean")
    )
    assert table.loc["one", "verdict"] == "inconclusive" and table.loc["one", "difference"] == pytest.approx(0.2)
    assert table.loc["one", "reason"] == "one seed: no interval"
    assert table.loc["none", "n_seeds"] == 0 and table.loc["none", "reason"] == "no paired runs"
    nan_run = run(tmp_path, "c", 1, 0.5)
    metrics = json.loads((nan_run / "metrics.json").read_text())
    metrics["dev"]["sts"] = None  # a constant STS prediction: Pearson r NaN, written as null
    (nan_run / "metrics.json").write_text(json.dumps(metrics))
    nan_claim = table_of(tmp_path, Claim("nan", "a beats c", "a", ">", "c", "mean")).loc["nan"]
    assert nan_claim["n_seeds"] == 0 and nan_claim["verdict"] == "inconclusive"
    shown = claims_mod.formatted_claims(table.reset_index())
    assert shown.loc["one", "Ours: difference [95% CI]"] == "+0.200" and shown.loc["none", "Verdict"] == "inconclusive"


def test_examples_to_target_claim(tmp_path):
    # a reaches 95% of the weaker best (b's 0.60 -> 0.57) after 200 examples, b after 600; on every seed
    for seed, shift in ((1, 0), (2, 40), (3, -40)):
        run(tmp_path, "a", seed, 0.6, [(100, 0.40), (200 + shift, 0.58), (300, 0.61)])
        run(tmp_path, "b", seed, 0.6, [(300, 0.50), (600, 0.60), (900, 0.55)])
    speed = Claim("speed", "a is faster", "a", "<", "b", "examples_to_target", 0.95, "sooner (no number)")
    row = table_of(tmp_path, speed).loc["speed"]
    assert row["verdict"] == "holds" and row["difference"] == pytest.approx(-400)
    assert math.isnan(row["paper_difference"]) and row["paper_says"] == "sooner (no number)"
    assert (
        claims_mod.formatted_claims(table_of(tmp_path, speed).reset_index()).loc["speed", "Paper: difference"]
        == "sooner (no number)"
    )
    assert claims_mod.examples_to_target(tmp_path / "a-h1/seed1", tmp_path / "b-h1/seed1") == (200, 600)


def test_examples_to_target_counts_the_final_phase_only(tmp_path):
    # a pretrains 500 examples (phase 0) before fine-tuning; only its fine-tuning examples count
    a = run(tmp_path, "a", 1, 0.6)
    rows = [(0, 250, 0.30), (0, 500, 0.35), (1, 600, 0.50), (1, 700, 0.60)]
    (a / "history.jsonl").write_text(
        "".join(json.dumps({"type": "eval", "phase": ph, "examples_seen": x, "mean": m}) + "\n" for ph, x, m in rows)
    )
    b = run(tmp_path, "b", 1, 0.6, [(100, 0.2), (200, 0.6)])
    assert claims_mod.examples_to_target(a, b) == (200, 200)  # target 0.57: a at 700 - 500, b at 200


def test_shipped_claims_file_loads_against_the_experiments():
    claims = load_claims()
    assert len(claims) >= 7 and len({c.id for c in claims}) == len(claims)
    ids = {r["id"] for r in load_experiments()}
    assert all(c.left in ids and c.right in ids for c in claims)
    assert any(c.metric == "examples_to_target" for c in claims)


@pytest.mark.parametrize(
    "text,message",
    [
        ("claims: []\n", "line 1: claims: expected a top-level key 'claims'"),
        (
            "claims:\n  - {id: x, claim: c, compare: a >> b, metric: mean}\n",
            "line 2: claims[0].compare: expected '<row> > <row>' or '<row> < <row>'",
        ),
        (
            "claims:\n  - id: x\n    claim: c\n    compare: a > nope\n    metric: mean\n",
            "line 4: claims[0].compare: 'nope' is no row",
        ),
        (
            "claims:\n  - id: x\n    claim: c\n    compare: a > b\n    metric: accuracy\n",
            "line 5: claims[0].metric: unknown metric 'accuracy'; allowed: sst, para",
        ),
        (
            "claims:\n  - id: x\n    claim: c\n    compare: a > b\n    metric: mean\n    colour: red\n",
            "line 6: claims[0].colour: unknown key",
        ),
        (
            "claims:\n  - {id: x, claim: c, compare: a > b, metric: mean}\n  - {id: x, claim: d, compare: b > a, metric: sts}\n",
            "line 3: claims[1].id: repeats id 'x'",
        ),
        ("claims:\n  - {id: x, claim: c, compare: a > b}\n", "line 2: claims[0]: lacks key 'metric'"),
        (
            "claims:\n  - {id: x, claim: c, compare: a > b, metric: mean, fraction: 0.9}\n",
            "claims[0].fraction: only for metric examples_to_target",
        ),
        (
            "claims:\n  - {id: x, claim: c, compare: a < b, metric: examples_to_target, fraction: 2}\n",
            "claims[0].fraction: expected a number in (0, 1]",
        ),
        ("claims:\n  - {id: x, claim: c, compare: a > a, metric: mean}\n", "compares row 'a' with itself"),
    ],
)
def test_bad_claims_file(tmp_path, text, message):
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_claims(path, experiments=ROWS)
    assert str(err.value).startswith(str(path)) and message in str(err.value), str(err.value)
