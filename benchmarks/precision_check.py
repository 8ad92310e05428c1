"""Does bf16 change a conclusion? fp32 runs of some rows against the bf16 runs of the same rows and seeds.

    python -m mtlib sweep --profile quick --rows base concat_embed pcgrad --set precision=fp32 --out outputs/fp32
    python benchmarks/precision_check.py --bf16 outputs/runs --fp32 outputs/fp32

For every row with an fp32 run it prints, on the dev mean and per task: the fp32 score, the bf16 score of the
same seed, their difference, and the bf16 seed-to-seed standard deviation of that row (from the bf16 runs'
seeds: run the `study` profile for three); a difference smaller than twice the seed sd is "within noise".
Then every claim of params/claims.yaml whose two rows both have fp32 runs: the sign of its difference in
fp32 and in bf16 on the same seed (a conclusion that flips sign is reported).
"""

from __future__ import annotations

import argparse
import math
import statistics

from mtlib import TASKS
from mtlib.rundir import collect_metrics
from mtlib.results.claims import run_score
from mtlib.experiments.claims_file import load_claims

METRICS = (*TASKS, "mean")


def by_row_seed(out_dir: str, precision: str) -> dict[tuple[str, int], dict[str, float]]:
    runs = [m for m in collect_metrics(out_dir) if m.get("precision") == precision]
    return {(m["name"], m["seed"]): {k: run_score(m, k) for k in METRICS} for m in runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bf16", required=True, help="runs folder holding the bf16 runs (several seeds)")
    ap.add_argument("--fp32", required=True, help="runs folder holding the fp32 runs")
    args = ap.parse_args()
    bf16, fp32 = by_row_seed(args.bf16, "bf16"), by_row_seed(args.fp32, "fp32")
    if not fp32:
        raise SystemExit(f"error: no fp32 run under {args.fp32}")
    print(f"{'row':16s} {'seed':>6s} {'metric':6s} {'fp32':>7s} {'bf16':>7s} {'diff':>7s} {'seed sd':>8s}  verdict")
    within = total = 0
    for (row, seed), ours in sorted(fp32.items()):
        if (row, seed) not in bf16:
            print(f"{row:16s} {seed:>6d} no bf16 run of this seed")
            continue
        seeds = [s for (r, _), s in bf16.items() if r == row]
        for metric in METRICS:
            sd = statistics.stdev([s[metric] for s in seeds]) if len(seeds) > 1 else math.nan
            diff = ours[metric] - bf16[(row, seed)][metric]
            ok = abs(diff) <= 2 * sd if not math.isnan(sd) else None
            within, total = within + bool(ok), total + (ok is not None)
            verdict = "n/a (one bf16 seed)" if ok is None else ("within noise" if ok else "OUTSIDE 2 sd")
            print(
                f"{row:16s} {seed:>6d} {metric:6s} {ours[metric]:7.3f} {bf16[(row, seed)][metric]:7.3f} "
                f"{diff:+7.3f} {sd:8.3f}  {verdict} (bf16 seeds: {len(seeds)})"
            )
    print(f"\n{within} of {total} (row, metric) differences within twice the bf16 seed sd")
    print("\nclaims whose rows both ran in fp32 (sign of left - right on the same seed):")
    seeds = sorted({seed for _, seed in fp32})
    for claim in load_claims():
        if claim.metric not in METRICS:
            continue
        for seed in seeds:
            pairs = [
                (runs[(claim.left, seed)], runs[(claim.right, seed)])
                for runs in (fp32, bf16)
                if (claim.left, seed) in runs and (claim.right, seed) in runs
            ]
            if len(pairs) < 2:
                continue
            d32, d16 = (left[claim.metric] - right[claim.metric] for left, right in pairs)
            print(
                f"  {claim.id:28s} seed {seed}: fp32 {d32:+.3f}, bf16 {d16:+.3f} "
                f"{'same sign' if (d32 > 0) == (d16 > 0) else 'SIGN FLIPS'}"
            )


if __name__ == "__main__":
    main()
