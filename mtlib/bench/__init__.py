"""Benchmarks that print what they measured (never timed tests).

- ``python -m mtlib bench gradients``: the gradient methods' combination step (``mtlib.bench.gradients``);
- ``python -m mtlib bench runs``: many runs on one device: one at a time, N processes, one pack
  (``mtlib.bench.runs``);
- ``python -m mtlib bench train``: mtlib's step kinds against a plain transformers loop and the machine's
  matmul peak (``mtlib.bench.train``).
"""

from __future__ import annotations


def main(
    what: str,
    profile: str = "quick",
    repeats: int = 5,
    backbone: str = "minilm-l6",
    precision: str = "auto",
    steps: int = 3,
    rows: str | None = None,
    device: str = "auto",
    seeds: int | None = None,
    processes: int = 2,
    batches: int | None = None,
) -> int:
    if what == "runs":
        from mtlib.bench.runs import bench_runs

        bench_runs(profile, row=(rows or "pcgrad"), seeds=seeds, processes=processes, batches=batches, device=device)
        return 0
    if what == "gradients":
        from mtlib.bench.gradients import bench_gradients

        bench_gradients(profile, repeats)
        return 0
    from mtlib.bench.train import DEFAULT_ROWS, ROWS, bench_train

    chosen = tuple(r.strip() for r in rows.split(",")) if rows else DEFAULT_ROWS
    unknown = [r for r in chosen if r not in ROWS]
    if unknown:
        raise ValueError(f"bench train: unknown row(s) {unknown}; expected a comma-separated list of {', '.join(ROWS)}")
    precisions = tuple(p.strip() for p in precision.split(","))
    bench_train(backbone, precisions, batches_per_task=steps, repeats=repeats, rows=chosen, device=device)
    return 0
