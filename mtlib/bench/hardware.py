"""What the machine can do and what a piece of code used: matmul peak, model FLOPs, peak memory."""

from __future__ import annotations

import ctypes
import gc
import resource
import statistics
import threading
import time
from pathlib import Path

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(precision: str, hidden: int, intermediate: int, device: torch.device, rounds: int = 5) -> dict:
    """The best GFLOP/s of (m x k) @ (k x n) products in ``precision``: at the encoder's own shapes (a batch of
    ~1,000 tokens through its feed-forward layers) and a large square one (8192 on a GPU, where a 2048 product
    is over before the launch overhead is). Median of ``rounds`` per shape, each timing ``per_round`` products."""
    dtype = DTYPES[precision]
    square = 8192 if device.type == "cuda" else 2048
    per_round = 10 if device.type == "cuda" else 1
    shapes = {
        "model": (1024, hidden, intermediate),
        "model-T": (1024, intermediate, hidden),
        "square": (square, square, square),
    }
    out = {}
    for name, (m, k, n) in shapes.items():
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(k, n, device=device).to(dtype)
        for _ in range(2):  # kernel choice and caches
            a @ b
        sync(device)
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            for _ in range(per_round):
                a @ b
            sync(device)
            times.append((time.perf_counter() - t) / per_round)
        out[name] = 2 * m * k * n / statistics.median(times) / 1e9
    out["peak"] = max(out.values())
    return out


def encoder_shape(config) -> tuple[int, int, int]:
    """(layers, hidden, intermediate) of a BERT-style config."""
    return config.num_hidden_layers, config.hidden_size, config.intermediate_size


def training_flops(lengths: list[int], config) -> float:
    """Model FLOPs of one forward + backward (3x forward) over sequences of these *real* lengths: the encoder's
    matmuls (2 FLOPs per weight per token) and attention's two s x s products; padding counts for nothing."""
    layers, hidden, inter = encoder_shape(config)
    per_token = 2 * layers * (4 * hidden * hidden + 2 * hidden * inter)
    attention = sum(4 * layers * s * s * hidden for s in lengths)
    return 3 * (per_token * sum(lengths) + attention)


def rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes, peak so far


class PeakMemory:
    """Peak resident memory of the process while the block runs (sampled every 2 ms); on CUDA, the peak of
    allocated device memory as well."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self.device_peak = device, 0, None
        self._stop = threading.Event()

    def __enter__(self) -> "PeakMemory":
        release_memory()
        self.peak = rss_bytes()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        if self.device.type == "cuda":
            self.device_peak = torch.cuda.max_memory_allocated(self.device)


def release_memory() -> None:
    """Free what the previous measurement left: Python garbage, the CUDA cache, glibc's free lists."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
