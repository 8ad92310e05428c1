"""glibc malloc settings against glibc's defaults on the same training steps, in one invocation.

Each repetition runs two fresh processes one after the other (defaults, then mtlib's settings; the order
alternates), each training the same MiniLM batches (single-task and PCGrad steps, fp32, this machine's
threads) after one warm-up step, and reports the steps' minor page faults, system and user CPU seconds and
wall seconds (getrusage around the steps). Medians over repetitions; the ratio is what decides
(mtlib.machine.allocator).

    .venv/bin/python benchmarks/malloc_check.py [--steps 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
from mtlib.machine.allocator import tune_malloc
from mtlib.bench.train import build, _streams, _mtlib_runner
what = tune_malloc()
s = build("minilm-l6", {"sst": 32, "para": 16, "sts": 32}, int(sys.argv[1]), "cpu")
out = {"malloc": what}
for row, kind in (("single", "single"), ("pcgrad", "pcgrad")):
    streams = _streams(s, "length")
    step, _ = _mtlib_runner(s, row, kind, streams, "fp32")
    step()  # warm-up
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(int(sys.argv[1])):
        step()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out[row] = {"faults": r1.ru_minflt - r0.ru_minflt, "sys": r1.ru_stime - r0.ru_stime,
                "user": r1.ru_utime - r0.ru_utime, "wall": time.perf_counter() - t0}
print("RESULT " + json.dumps(out))
"""


def run(mode: str, steps: int) -> dict:
    env = {**os.environ, "MTLIB_MALLOC": mode, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(steps)], env=env, capture_output=True, text=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"child ({mode}) failed:\n{done.stderr[-2000:]}")
    return json.loads(line[7:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    modes = ("default", "mtlib")
    results = {m: [] for m in modes}
    for i in range(args.repeats):
        for mode in modes[i % 2 :] + modes[: i % 2]:  # the order alternates
            results[mode].append(run(mode, args.steps))
    print(f"malloc check: {args.steps} steps per row, {args.repeats} repetitions (alternating order), medians")
    print(f"{'row':8s} {'settings':8s} {'faults':>9s} {'sys s':>7s} {'user s':>7s} {'cpu s':>7s} {'wall s':>7s}")
    for row in ("single", "pcgrad"):
        med = {}
        for mode in modes:
            rs = [r[row] for r in results[mode]]
            med[mode] = {k: statistics.median(r[k] for r in rs) for k in ("faults", "sys", "user", "wall")}
            m = med[mode]
            print(
                f"{row:8s} {mode:8s} {m['faults']:9.0f} {m['sys']:7.2f} {m['user']:7.2f} "
                f"{m['sys'] + m['user']:7.2f} {m['wall']:7.2f}"
            )
        cpu = {k: med[k]["sys"] + med[k]["user"] for k in med}
        print(
            f"{row:8s} mtlib/default: CPU time {cpu['mtlib'] / cpu['default']:.2f}x, "
            f"wall {med['mtlib']['wall'] / med['default']['wall']:.2f}x"
        )
    print("settings:", results["mtlib"][0]["malloc"])


if __name__ == "__main__":
    main()
