"""mtlib.results.claims: verdicts from synthetic runs (win, loss, CI over 0, one seed, collapse, speed), the claims
table's power and provenance columns, claims.yaml checks. The statistics themselves: tests/test_verdicts.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from scipy import stats

from mtlib.config.types import ConfigError
from mtlib.results import claims as claims_mod
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


def run(out: Path, name: str, seed: int, mean: float, evals: list[tuple[int, float]] = (), sts=None) -> Path:
    """A finished run whose three dev scores all equal ``mean`` (so its plain mean is ``mean``), or STS ``sts``."""
    d = out / f"{name}-h{seed}" / f"seed{seed}"
    d.mkdir(parents=True)
    dev = {"sst": mean, "para": mean, "sts": mean if sts is None else sts}
    metrics = {"name": name, "seed": seed, "config_hash": "h", "dev": dev, "backbone": "minilm-l6"}
    (d / "metrics.json").write_text(json.dumps({**metrics, "examples_seen": 2400}))
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
    half = stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)  # t(2) * sd / sqrt(n), sd of 0.10, 0.11, 0.12 = 0.01
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
    # a paper difference the design cannot resolve: below resolution, with the seeds it would take
    small = claims_mod.verdict([0.05, -0.04, 0.02], +1, paper_difference=0.006)
    assert small["verdict"] == "below resolution" and small["mde"] > 0.006 and small["seeds_needed"] > 3
    # "does not help" as non-superiority: the interval below the margin; above it, refuted
    assert claims_mod.verdict([0.001, -0.002, 0.0, 0.001], kind="non_superiority", margin=0.01)["verdict"] == "holds"
    refuted = claims_mod.verdict([0.05, 0.06, 0.055], kind="non_superiority", margin=0.01)
    assert refuted["verdict"] == "fails" and "above the margin" in refuted["reason"]


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
    # the paper's +0.033 is far below what 3 seeds with this spread can detect
    assert noise["verdict"] == "below resolution" and noise["ci_low"] < 0 < noise["ci_high"]
    assert noise["mde"] > noise["claimed_size"] == pytest.approx(noise["paper_difference"])
    assert (table["family_size"] == 3).all() and table.loc["win", "p_adjusted"] >= table.loc["win", "p_value"]
    assert table.loc["win", "backbone"] == "all-MiniLM-L6-v2" and table.loc["win", "budget"] == "2,400 examples/run"
    md = claims_mod.claims_markdown(table.reset_index())
    assert "| win | a beats b | directional | a > b | dev mean | 3 | +0.100 [" in md
    assert "1 holds, 1 fails, 0 inconclusive, 1 below resolution" in md and "Holm family of 3" in md
    assert "trained on Quora duplicate pairs" in md  # the backbone's caveat


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
    metrics["dev"]["sts"] = None  # an older run's constant STS prediction: Pearson r NaN, written as null
    (nan_run / "metrics.json").write_text(json.dumps(metrics))
    nan_claim = table_of(tmp_path, Claim("nan", "a beats c", "a", ">", "c", "mean")).loc["nan"]
    # counted with r = 0, not dropped: a's 0.7 against c's (0.5 + 0.5 + 0) / 3
    assert nan_claim["n_seeds"] == 1 and nan_claim["n_collapsed"] == 1 and nan_claim["collapsed_seeds"] == [1]
    assert nan_claim["difference"] == pytest.approx(0.7 - 1 / 3) and nan_claim["verdict"] == "inconclusive"
    shown = claims_mod.formatted_claims(table.reset_index())
    assert shown.loc["one", "Ours: difference [95% CI]"] == "+0.200" and shown.loc["none", "Verdict"] == "inconclusive"


def test_examples_to_target_claim(tmp_path):
    # a reaches 95% of the weaker best (b's 0.60 -> 0.57) after 200 examples, b after 600; on every seed
    shifts = (0, 40, -40, 0, 40, -40, 0)
    for seed, shift in enumerate(shifts[:3], 1):
        run(tmp_path, "a", seed, 0.6, [(100, 0.40), (200 + shift, 0.58), (300, 0.61)])
        run(tmp_path, "b", seed, 0.6, [(300, 0.50), (600, 0.60), (900, 0.55)])
    speed = Claim("speed", "a is faster", "a", "<", "b", "examples_to_target", 0.95, "sooner (no number)")
    row = table_of(tmp_path, speed).loc["speed"]
    # a discrete metric: the sign-flip test decides, and three seeds cannot reach p < 0.025 (2^-3 = 0.125)
    assert row["method"] == "sign-flip permutation" and row["difference"] == pytest.approx(-400)
    assert row["verdict"] == "inconclusive" and "needs \u2265 6" in row["reason"] and row["p_value"] == 1 / 8
    assert math.isnan(row["paper_difference"]) and row["paper_says"] == "sooner (no number)"
    assert (
        claims_mod.formatted_claims(table_of(tmp_path, speed).reset_index()).loc["speed", "Paper: difference"]
        == "sooner (no number)"
    )
    assert claims_mod.examples_to_target(tmp_path / "a-h1/seed1", tmp_path / "b-h1/seed1") == (200, 600)
    for seed, shift in enumerate(shifts[3:], 4):
        run(tmp_path, "a", seed, 0.6, [(100, 0.40), (200 + shift, 0.58), (300, 0.61)])
        run(tmp_path, "b", seed, 0.6, [(300, 0.50), (600, 0.60), (900, 0.55)])
    row = table_of(tmp_path, speed).loc["speed"]
    assert row["n_seeds"] == 7 and row["verdict"] == "holds" and row["p_value"] == 1 / 2**7
    assert row["ci_high"] < 0 and row["ci_high"] - row["ci_low"] > 0


def test_identical_speed_differences_never_hold_from_two_seeds(tmp_path):
    # whole epochs: both seeds exactly one epoch (300 examples) sooner
    for seed in (1, 2):
        run(tmp_path, "a", seed, 0.6, [(300, 0.58), (600, 0.60)])
        run(tmp_path, "b", seed, 0.6, [(300, 0.50), (600, 0.60)])
    speed = Claim("speed", "a is faster", "a", "<", "b", "examples_to_target")
    row = table_of(tmp_path, speed).loc["speed"]
    assert row["difference"] == -300 and row["sd"] == 0 and row["verdict"] == "inconclusive"
    assert not (row["ci_low"] == row["ci_high"])  # no zero-width interval: none at all with two seeds
    for seed in range(3, 9):
        run(tmp_path, "a", seed, 0.6, [(300, 0.58), (600, 0.60)])
        run(tmp_path, "b", seed, 0.6, [(300, 0.50), (600, 0.60)])
    row = table_of(tmp_path, speed).loc["speed"]  # eight identical differences: the sign-flip test decides
    assert row["verdict"] == "holds" and (row["ci_low"], row["ci_high"]) == (-450, -150)  # widened by half an epoch


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
    assert all(c.left in ids and c.right in ids and set(c.paper_rows) <= ids for c in claims)
    by_id = {c.id: c for c in claims}
    # the speed claim on a continuous score of each run, against the matched single-task recipe
    assert (by_id["compromise_speed"].metric, by_id["compromise_speed"].right) == ("dev_auc", "pal_h1_pretrain")
    # "does not help" is a margin claim, never "is worse than"; surgery against its matched control
    for no_help in (
        "pcgrad_no_help",
        "gradvac_no_help",
        "gradvac_smart_no_help",
        "rnn_head_no_help",
        "lstm_head_no_help",
    ):
        assert by_id[no_help].kind == "non_superiority" and by_id[no_help].margin == 0.01
    assert {by_id[i].right for i in ("pcgrad_no_help", "gradvac_no_help", "gradvac_smart_no_help")} == {"sum_all"}
    assert by_id["pcgrad_no_help"].paper_rows == ("pcgrad", "base_pal_h1")  # the paper's own -0.018 stays shown
    assert by_id["eda_helps"].compare == "base_pal_h1_eda > base_pal_h1"
    assert by_id["pals_finetune_help"].compare == "advanced_pal_finetune > advanced"
    assert by_id["lstm_sts_head_no_help"].left == "lstm256_sts_cls"


def test_dev_auc_is_the_mean_of_the_final_phases_dev_curve(tmp_path):
    from mtlib.results.claims import dev_auc

    rows = [
        {"type": "eval", "phase": 1, "epoch": 1, "examples_seen": 10, "mean": 0.9},  # pretraining: left out
        {"type": "eval", "phase": 2, "epoch": 1, "examples_seen": 20, "mean": 0.4},
        {"type": "eval", "phase": 2, "epoch": 2, "examples_seen": 30, "mean": 0.6},
    ]
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert dev_auc(tmp_path) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "text,message",
    [
        ("claims: []\n", "line 1: claims: expected a top-level key 'claims'"),
        (
            "claims:\n  - {id: x, claim: c, kind: directional, compare: a >> b, metric: mean}\n",
            "line 2: claims[0].compare: a directional claim expects '<row> > <row>' or '<row> < <row>', got 'a >> b'",
        ),
        (
            "claims:\n  - id: x\n    claim: c\n    kind: directional\n    compare: a > nope\n    metric: mean\n",
            "line 5: claims[0].compare: 'nope' is no row",
        ),
        (
            "claims:\n  - id: x\n    claim: c\n    kind: directional\n    compare: a > b\n    metric: accuracy\n",
            "line 6: claims[0].metric: unknown metric 'accuracy'; allowed: sst, para",
        ),
        (
            "claims:\n  - id: x\n    claim: c\n    kind: directional\n    compare: a > b\n    metric: mean\n    colour: red\n",
            "line 7: claims[0].colour: unknown key",
        ),
        (
            "claims:\n  - {id: x, claim: c, kind: directional, compare: a > b, metric: mean}\n"
            "  - {id: x, claim: d, kind: directional, compare: b > a, metric: sts}\n",
            "line 3: claims[1].id: repeats id 'x'",
        ),
        (
            "claims:\n  - {id: x, claim: c, kind: directional, compare: a > b}\n",
            "line 2: claims[0]: lacks key 'metric'",
        ),
        ("claims:\n  - {id: x, claim: c, compare: a > b, metric: mean}\n", "line 2: claims[0]: lacks key 'kind'"),
        (
            "claims:\n  - {id: x, claim: c, kind: directional, compare: a > b, metric: mean, fraction: 0.9}\n",
            "claims[0].fraction: only for metric examples_to_target",
        ),
        (
            "claims:\n  - {id: x, claim: c, kind: directional, compare: a < b, metric: examples_to_target, fraction: 2}\n",
            "claims[0].fraction: expected a number in (0, 1]",
        ),
        (
            "claims:\n  - {id: x, claim: c, kind: directional, compare: a > a, metric: mean}\n",
            "compares row 'a' with itself",
        ),
        # kinds, their comparisons and margins
        (
            "claims:\n  - {id: x, claim: c, kind: no_help, compare: a < b, metric: mean}\n",
            "line 2: claims[0].kind: unknown kind 'no_help'; allowed: directional, non_superiority, equivalence",
        ),
        (
            "margin: 0.01\nclaims:\n  - {id: x, claim: c, kind: non_superiority, compare: a < b, metric: mean}\n",
            "line 3: claims[0].compare: a non_superiority claim expects '<row> <= <row>', got 'a < b'",
        ),
        (
            "margin: 0.01\nclaims:\n  - {id: x, claim: c, kind: equivalence, compare: a <= b, metric: mean}\n",
            "claims[0].compare: an equivalence claim expects '<row> ~ <row>'",
        ),
        (
            "claims:\n  - {id: x, claim: c, kind: directional, compare: a <= b, metric: mean}\n",
            "claims[0].compare: a directional claim expects '<row> > <row>' or '<row> < <row>', got 'a <= b'",
        ),
        (
            "claims:\n  - {id: x, claim: c, kind: non_superiority, compare: a <= b, metric: mean}\n",
            "line 2: claims[0]: a non_superiority claim needs a margin: give 'margin' here or a top-level 'margin'",
        ),
        (
            "margin: 0.01\nclaims:\n  - {id: x, claim: c, kind: non_superiority, compare: a <= b, metric: mean, margin: 0}\n",
            "line 3: claims[0].margin: expected a number > 0 (δ of a non_superiority claim), got 0",
        ),
        (
            "margin: -0.01\nclaims:\n  - {id: x, claim: c, kind: equivalence, compare: a ~ b, metric: mean}\n",
            "line 1: margin: expected a number > 0 (the default δ of margin claims on dev scores), got -0.01",
        ),
        (
            "margin: 0.01\nclaims:\n  - {id: x, claim: c, kind: directional, compare: a > b, metric: mean, margin: 0.02}\n",
            "line 3: claims[0].margin: only for kinds non_superiority, equivalence (this claim is directional)",
        ),
        (
            "margin: 0.01\nclaims:\n  - {id: x, claim: c, kind: non_superiority, compare: a <= b, metric: examples_to_target}\n",
            "claims[0]: a non_superiority claim on examples_to_target needs its own 'margin' (in its unit",
        ),
        (
            "margin: 0.01\nalpha: 0.1\nclaims:\n  - {id: x, claim: c, kind: directional, compare: a > b, metric: mean}\n",
            "line 2: alpha: unknown top-level key; allowed: claims, margin",
        ),
        (
            "claims:\n  - {id: x, claim: c, kind: directional, compare: a > b, metric: mean, paper_compare: a > b}\n",
            "claims[0].paper_compare: expected '<row> - <row>'",
        ),
        (
            "claims:\n  - {id: x, claim: c, kind: directional, compare: a > b, metric: mean, paper_compare: a - zz}\n",
            "claims[0].paper_compare: 'zz' is no row",
        ),
    ],
)
def test_bad_claims_file(tmp_path, text, message):
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_claims(path, experiments=ROWS)
    assert str(err.value).startswith(str(path)) and message in str(err.value), str(err.value)
