"""``python -m mtlib study``: the decisive study, every row a claim compares x N paired seeds, in packs.

The rows default to every row of ``params/claims.yaml``'s comparisons (with their parents); the seeds are the
profile's first N (fixed in advance in the profile, so every shard and every rerun pairs the same seeds).
``--shard i/n`` trains the i-th of n parts (rows dealt round-robin, each with its parents; a parent two shards
share is trained once and found by the other). Finished runs are found, interrupted ones resume from their
last.pt, so the same command, run again, finishes what is left. It prints the packs it forms, a live line and a
summary with the wall time and runs per hour.
"""

from __future__ import annotations

import sys
import time

from mtlib.config.run_config import parse_overrides
from mtlib.experiments.claims_file import load_claims
from mtlib.experiments.resolve import profile_seeds
from mtlib.runs.executor import execute, interrupted_at
from mtlib.runs.interrupts import explained
from mtlib.runs.pack.engine import PackedEngine
from mtlib.runs.plan import plan


def claim_rows() -> list[str]:
    """Every row some claim compares, in the claims' order."""
    rows: list[str] = []
    for claim in load_claims():
        for row in (claim.left, claim.right, *claim.paper_rows):
            if row and row not in rows:
                rows.append(row)
    return rows


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return 1, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        i = n = 0
    if not 1 <= i <= n:
        raise ValueError(f"--shard {text!r}: expected i/n with 1 <= i <= n (e.g. 2/4)")
    return i, n


def study_seeds(profile: str, n: int | None) -> list[int]:
    seeds = profile_seeds(profile)
    if n is None:
        return seeds
    if not 1 <= n <= len(seeds):
        raise ValueError(
            f"--seeds {n}: profile {profile!r} fixes {len(seeds)} seeds ({seeds}); expected 1..{len(seeds)} "
            "(add seeds to the profile's 'seeds' list for more)"
        )
    return seeds[:n]


def study_command(args) -> int:
    overrides = parse_overrides(args.set)
    rows = list(args.rows) or claim_rows()
    i, n = parse_shard(args.shard)
    rows = rows[i - 1 :: n]
    seeds = study_seeds(args.profile, args.seeds)
    if args.out:
        overrides["out_dir"] = args.out
    runs = plan(args.profile, rows, seeds, **overrides)
    size = None if args.pack in (None, "auto") else int(args.pack)
    print(
        f"[study] profile {args.profile}, shard {i}/{n}: {len(rows)} rows x {len(seeds)} seeds = {len(runs)} runs "
        f"(parents included), packs of {'auto' if size is None else size}",
        file=sys.stderr,
        flush=True,
    )
    start = time.perf_counter()
    with explained(lambda: interrupted_at(runs, "study")):
        sweep = execute(runs, PackedEngine(size))
    wall = time.perf_counter() - start
    trained = [r for r in sweep.runs.values() if r.state == "done" and not r.found]
    rate = len(trained) / wall * 3600 if wall > 0 else 0.0
    print(
        f"[study] {len(trained)} trained, {sum(r.found for r in sweep.runs.values())} found, "
        f"{len(sweep.failed)} failed in {wall:.0f} s ({rate:.0f} runs/hour)",
        file=sys.stderr,
        flush=True,
    )
    return 1 if sweep.failed else 0
