"""``python -m mtlib bench runs``: many runs on one device, technique against technique, in one invocation.

The same row and seeds (a short budget: one epoch of ``batches`` updates, a small dev subsample) are trained
three ways: one run after another in this process, ``processes`` worker processes side by side, and as one
pack (``mtlib.runs.pack``). For each it prints runs per hour, training examples per second summed over the
runs, aggregate model-FLOP utilisation (the encoder's matmul FLOPs of the real tokens, attention left out, over
wall time, against this device's measured matmul peak), peak memory (this process's resident memory; on CUDA
also its peak allocated device memory; worker processes are not counted), and how far each run's dev scores
lie from the same run trained alone (a pack's runs are the same runs: see docs/packed.md).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from mtlib.bench.hardware import PeakMemory, matmul_peak
from mtlib.experiments.resolve import profile_seeds
from mtlib.machine.runtime import resolve_device, resolve_precision
from mtlib.rundir import read_metrics
from mtlib.runs.executor import execute
from mtlib.runs.plan import plan


def _engines(processes: int, pack: int):
    from mtlib.runs.local import LocalEngine
    from mtlib.runs.pack.engine import PackedEngine
    from mtlib.runs.pool import PoolEngine

    return [
        ("one run at a time", lambda: LocalEngine()),
        (f"{processes} processes", lambda: PoolEngine(processes)),
        (f"pack of {pack}", lambda: PackedEngine(pack, show=False)),
    ]


def bench_runs(
    profile: str = "gpu",
    row: str = "pcgrad",
    seeds: int | None = None,
    processes: int = 2,
    batches: int | None = None,
    device: str = "auto",
) -> list[dict]:
    dev = resolve_device(device)
    seeds = seeds or (8 if dev.type == "cuda" else 2)
    batches = batches or (30 if dev.type == "cuda" else 3)
    fixed = profile_seeds(profile)
    seed_list = fixed[:seeds] if len(fixed) >= seeds else list(range(1, seeds + 1))
    overrides = dict(
        epochs=1,
        batches_per_epoch=batches,
        dev_subsample=64,
        final_dev="subsample",
        predict_test=False,
        progress=False,
        dropout_rng="keyed",
        device=device,
        phases=(),
    )
    root = Path(tempfile.mkdtemp(prefix="mtlib-bench-runs-"))
    results = []
    for name, make in _engines(processes, len(seed_list)):
        runs = plan(profile, [row], seed_list, out_dir=str(root / name.replace(" ", "_")), **overrides)
        cfg = runs[0].cfg
        precision = resolve_precision(cfg.precision, dev)
        start = time.perf_counter()
        with PeakMemory(dev) as memory:
            sweep = execute(runs, make(), show=False)
        wall = time.perf_counter() - start
        done = [r for r in sweep.runs.values() if r.state == "done"]
        metrics = [read_metrics(r.run_dir) for r in done]
        examples = sum(m["speed"]["all"]["examples"] for m in metrics)
        tokens = sum(m["speed"]["all"]["tokens"] for m in metrics)
        results.append(
            {
                "technique": name,
                "runs": len(done),
                "failed": len(sweep.failed),
                "wall_s": wall,
                "runs_per_hour": len(done) / wall * 3600,
                "examples_per_s": examples / wall,
                "tokens": tokens,
                "precision": precision,
                "peak_rss_gib": memory.peak / 2**30,
                "peak_device_gib": None if memory.device_peak is None else memory.device_peak / 2**30,
                "dev": {m["seed"]: m["dev"] for m in metrics},
            }
        )
    _add_mfu(results, cfg, dev)
    _add_distance(results)
    _print(results, profile, row, seed_list, batches, dev)
    return results


def _add_mfu(results: list[dict], cfg, dev: torch.device) -> None:
    from mtlib.bench.hardware import encoder_shape
    from mtlib.model.backbones import load_backbone

    encoder, _ = load_backbone(cfg.backbone)
    layers, hidden, inter = encoder_shape(encoder.config)
    per_token = 3 * 2 * layers * (4 * hidden * hidden + 2 * hidden * inter)
    peak = matmul_peak(results[0]["precision"], hidden, inter, dev)["peak"]
    for r in results:
        r["gflops"] = per_token * r["tokens"] / r["wall_s"] / 1e9
        r["mfu"] = r["gflops"] / peak
        r["peak_gflops"] = peak


def _add_distance(results: list[dict]) -> None:
    alone = results[0]["dev"]
    for r in results:
        diffs = [abs(r["dev"][s][k] - alone[s][k]) for s in r["dev"] if s in alone for k in alone[s]]
        r["max_dev_diff"] = max(diffs) if diffs else None


def _print(results, profile, row, seeds, batches, dev) -> None:
    print(
        f"\nbench runs: row {row}, profile {profile}, {len(seeds)} seeds, 1 epoch x {batches} updates, "
        f"device {dev} ({results[0]['precision']}), measured matmul peak {results[0]['peak_gflops']:.0f} GFLOP/s"
    )
    head = (
        f"{'technique':20s} {'runs':>4s} {'wall s':>7s} {'runs/h':>7s} {'ex/s':>7s} {'MFU':>6s} {'peak RSS GiB':>12s}"
    )
    head += f" {'device GiB':>10s} {'vs alone':>9s} {'speed-up':>8s}"
    print(head)
    for r in results:
        device = "-" if r["peak_device_gib"] is None else f"{r['peak_device_gib']:.2f}"
        diff = "-" if r["max_dev_diff"] is None else f"{r['max_dev_diff']:.1e}"
        print(
            f"{r['technique']:20s} {r['runs']:4d} {r['wall_s']:7.1f} {r['runs_per_hour']:7.0f} "
            f"{r['examples_per_s']:7.1f} {r['mfu']:6.1%} {r['peak_rss_gib']:12.2f} {device:>10s} {diff:>9s} "
            f"{r['runs_per_hour'] / results[0]['runs_per_hour']:7.2f}x"
        )
    print(
        "runs/h and ex/s: over the whole wall time (start-up, evaluation and checkpoints included); MFU: encoder "
        "matmul FLOPs of the real tokens / wall / measured peak; vs alone: largest |dev score difference| from "
        "the same seed trained alone; worker processes' memory is not in peak RSS"
    )
