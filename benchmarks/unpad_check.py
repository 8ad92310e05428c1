"""The unpadded encoder against transformers' padded forward on the same batches, as a ratio in one run.

MiniLM, the course's length-bucketed batches (sst 32, para 16, sts 32), one training step per task batch
(forward, loss, backward; no optimizer, identical weights for both), fp32 or bf16 autocast, one thread so
the process CPU time of each step is not a neighbour's. Padded and unpadded steps alternate batch by batch
(the order flips every repetition); medians of the per-batch CPU-time ratio. Also the largest difference of
the two losses (dropout off), which should be ~1e-6.

    .venv/bin/python benchmarks/unpad_check.py [--batches 12] [--precision fp32] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mtlib.bench.train import build, _streams
from mtlib.data.tokens import encode_batch
from mtlib.machine.runtime import autocast


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=12, help="batches per task")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    s = build("minilm-l6", {"sst": 32, "para": 16, "sts": 32}, args.batches, "cpu")
    model = s.model
    for m in model.modules():  # dropout off: both paths must give the same losses
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    streams = _streams(s, "length")
    batches = [
        (t, encode_batch(streams[t].next(), model.tokenizer, model.cfg.pair_mode, s.device))
        for _ in range(args.batches)
        for t in s.cfg.tasks
    ]
    real = sum(b["n_tokens"] for _, b in batches)
    slots = sum(b["n_padded"] for _, b in batches)

    def step(task, batch, unpadded: bool) -> tuple[float, float]:
        model.unpadded = unpadded
        model.zero_grad(set_to_none=True)
        t = time.process_time()
        with autocast(s.device, args.precision):
            loss = model.loss(task, model(task, batch), batch["labels"])
        loss.backward()
        return time.process_time() - t, float(loss.detach())

    for task, batch in batches[:3]:  # warm-up of both paths
        step(task, batch, True), step(task, batch, False)
    ratios, diffs, totals = [], [], {True: 0.0, False: 0.0}
    for i, (task, batch) in enumerate(batches):
        out = {}
        for unpadded in (True, False) if i % 2 else (False, True):
            out[unpadded] = step(task, batch, unpadded)
            totals[unpadded] += out[unpadded][0]
        ratios.append(out[False][0] / out[True][0])
        diffs.append(abs(out[False][1] - out[True][1]))
    print(
        f"unpad check: MiniLM, {len(batches)} task batches ({args.batches} per task), {args.precision}, "
        f"{args.threads} thread(s), {slots / real:.2f} padded slots per real token\n"
        f"  CPU time per step, padded / unpadded: median {statistics.median(ratios):.2f}x "
        f"(quartiles {statistics.quantiles(ratios, n=4)[0]:.2f}-{statistics.quantiles(ratios, n=4)[2]:.2f}); "
        f"totals {totals[False]:.1f} s / {totals[True]:.1f} s = {totals[False] / totals[True]:.2f}x\n"
        f"  largest loss difference {max(diffs):.1e} (dropout off)"
    )


if __name__ == "__main__":
    main()
