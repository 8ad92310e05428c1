"""Does the unpadded encoder change a result? Runs of some rows with ``unpad: true`` against the same rows and
seeds trained padded (an earlier release's runs, or ``--set unpad=false``), against seed noise.

    python benchmarks/layout_check.py --padded outputs/runs --unpadded <clone>/outputs/runs

For every row and seed with both: the dev mean and per-task scores, their difference, and the padded runs'
seed-to-seed standard deviation of that row (three seeds: the ``study`` profile); a difference smaller than
twice the seed sd is "within noise". Runs are matched by name and seed (their run ids differ: ``unpad`` is
in the id).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from mtlib import TASKS
from mtlib.results.claims import run_score

METRICS = (*TASKS, "mean")


def runs(out_dir: str, unpadded: bool) -> dict[tuple[str, int], dict]:
    out = {}
    for path in Path(out_dir).glob("*/seed*/metrics.json"):
        m = json.loads(path.read_text())
        config = (path.parent / "config.yaml").read_text()
        if ("unpad: true" in config) == unpadded:
            out[(m["name"], m["seed"])] = {k: run_score(m, k) for k in METRICS}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--padded", required=True)
    ap.add_argument("--unpadded", required=True)
    args = ap.parse_args()
    padded, unpadded = runs(args.padded, False), runs(args.unpadded, True)
    within = total = 0
    print(f"{'row':18s} {'seed':>6s} {'metric':6s} {'unpadded':>8s} {'padded':>8s} {'diff':>7s} {'seed sd':>8s}")
    for (name, seed), scores in sorted(unpadded.items()):
        if (name, seed) not in padded:
            continue
        for metric in METRICS:
            seeds = [v[metric] for (n, _), v in padded.items() if n == name]
            sd = statistics.stdev(seeds) if len(seeds) > 1 else float("nan")
            diff = scores[metric] - padded[(name, seed)][metric]
            ok = abs(diff) < 2 * sd
            within, total = within + ok, total + 1
            print(
                f"{name:18s} {seed:6d} {metric:6s} {scores[metric]:8.4f} {padded[(name, seed)][metric]:8.4f} "
                f"{diff:+7.4f} {sd:8.4f}  {'within noise' if ok else 'OUTSIDE 2 sd'}"
            )
    print(f"{within} of {total} differences within twice the seed sd")


if __name__ == "__main__":
    main()
