"""``python -m mtlib bench comm --profile smoke --nproc 2``: what the all-reduces of a distributed run cost.

Starts itself under ``torchrun --standalone --nproc-per-node N`` (gloo on CPU, NCCL on CUDA) unless it already
runs under a launcher, builds a combined-step phase (PCGrad; GradVac with ``--method gradvac``) of the profile's
model exactly as the trainer does, and times whole updates (each rank's share of T forward/backward passes,
the all-reduces, the combination, the optimizer step) against the time inside the all-reduces: the T per-task
gradient rows (dense part and row-sparse embedding rows), the row-id exchange, the heads and the losses.
Rank 0 prints medians over the repetitions. On one shared machine the ranks also compete for its cores.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import torch


def bench_comm(profile: str = "smoke", nproc: int = 2, repeats: int = 10, method: str = "pcgrad") -> int:
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:  # launch N copies of this benchmark
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(nproc),
            "-m",
            "mtlib",
            "bench",
            "comm",
            "--profile",
            profile,
            "--repeats",
            str(repeats),
            "--method",
            method,
        ]
        return subprocess.run(
            cmd, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        ).returncode
    return _measure(profile, repeats, method)


def _measure(profile: str, repeats: int, method: str) -> int:
    from mtlib.data.batches import BatchStream
    from mtlib.model.backbones import load_backbone
    from mtlib.model.multitask import ModelConfig, MultitaskModel
    from mtlib.experiments.resolve import resolve_config
    from mtlib.train import distributed as mdist
    from mtlib.train.phase import build_phase
    from mtlib.train.run_data import load_run_data
    from mtlib.machine.runtime import resolve_device, resolve_precision, seed_everything

    cfg = resolve_config(profile, gradient_method=method, progress=False)
    device = mdist.rank_device(resolve_device(cfg.device))
    precision = resolve_precision(cfg.precision, device)
    torch.set_num_threads(cfg.threads or 1)
    seed_everything(cfg.seed)
    data = load_run_data(cfg)
    encoder, tokenizer = load_backbone(cfg.backbone, seed=cfg.seed)
    model = MultitaskModel(ModelConfig.of(cfg), encoder, tokenizer).to(device)
    streams = {t: BatchStream(data["train"][t], cfg.batch_size[t], seed=cfg.seed + i) for i, t in enumerate(cfg.tasks)}
    sizes = {t: len(data["train"][t]) for t in cfg.tasks}
    phase = build_phase(0, "bench", cfg, True, model, streams, sizes, device, precision, cfg.seed)
    mdist.attach(phase, model, cfg.seed)
    sync, shard = phase.step.sync, phase.step.batch_loss.shard
    model.train()
    updates, comms, widths = [], [], []
    for i in range(repeats + 2):  # two warm-up updates
        _barrier(device)
        before = sync.comm_seconds + shard.comm_seconds
        t = time.perf_counter()
        phase.optimizer.zero_grad(set_to_none=True)
        phase.step(1)
        phase.optimizer.step()
        _barrier(device)
        if i >= 2:
            updates.append(time.perf_counter() - t)
            comms.append(sync.comm_seconds + shard.comm_seconds - before)
            widths.append(phase.step.task_grads.active_dim)
    if mdist.rank() == 0:
        up, comm = statistics.median(updates), statistics.median(comms)
        tg = phase.step.task_grads
        mb = len(cfg.tasks) * statistics.median(widths) * 4 / 2**20
        print(
            f"[bench comm] {mdist.world_size()} processes ({torch.distributed.get_backend()}), backbone "
            f"{cfg.backbone}, {method}, {precision}, D = {tg.dim:,} shared parameters, T = {len(cfg.tasks)} rows of "
            f"{int(statistics.median(widths)):,} active values ({mb:.2f} MiB per update), threads "
            f"{torch.get_num_threads()}, {repeats} updates"
        )
        print(
            f"[bench comm] update {up * 1e3:.1f} ms, all-reduces {comm * 1e3:.1f} ms ({100 * comm / up:.0f}% of "
            f"the update), medians"
        )
    return 0


def _barrier(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    torch.distributed.barrier()
