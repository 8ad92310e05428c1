"""What this machine computes fastest: the measured choice behind ``precision: auto``.

A CPU's brand says little (AMX Intel, AVX-512-BF16 AMD and AVX2-only CPUs all exist), so ``auto`` on a CPU
times bf16 against fp32 matmuls at an encoder's shapes and trains in bf16 only where bf16 is clearly faster
and its result is close to fp32's. The measurement is cached on disk per CPU model, instruction flags and
torch version, so every run on one machine resolves to the same precision (and the same run id) even when a
later measurement on a busy CPU would have come out differently. On CUDA the device's own bf16 flag decides
(bf16, else fp16 with a GradScaler). Every choice comes with a one-line reason for metrics.json.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # CPU instructions with native bf16 dot products
MIN_SPEEDUP = 1.15  # bf16 must beat fp32 clearly: a marginal gain is not worth bf16's coarser rounding
MAX_RELATIVE_ERROR = 2e-2  # bf16 keeps 8 bits of mantissa: ~4e-3 per product, less after fp32 accumulation
# (rows, inner, outer) of an encoder's matmuls at a typical batch: 16 x 36 tokens, MiniLM/BERT widths
SHAPES = ((576, 384, 1536), (576, 1536, 384), (1152, 768, 3072), (1152, 3072, 768))


@dataclass(frozen=True)
class Choice:
    precision: str
    reason: str


def cpu_flags() -> list[str]:
    """The bf16-related instruction flags of this CPU (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    words = set(text.split())
    return [f for f in BF16_FLAGS if f in words]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def matmul_seconds(dtype: torch.dtype, shape: tuple[int, int, int], repeats: int = 3) -> float:
    """Median seconds of one (m x k) @ (k x n) product in ``dtype`` on the CPU."""
    m, k, n = shape
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    a @ b  # first call: oneDNN picks and caches its kernel
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure_cpu_bf16(rounds: int = 5) -> dict:
    """bf16 against fp32 at ``SHAPES``: speed-up (fp32 time / bf16 time, interleaved rounds, medians, so a
    process sharing the CPU slows both alike) and the relative error of one bf16 product."""
    ratios = []
    for _ in range(rounds):
        fp32 = sum(matmul_seconds(torch.float32, s) for s in SHAPES)
        bf16 = sum(matmul_seconds(torch.bfloat16, s) for s in SHAPES)
        ratios.append(fp32 / bf16)
    a, b = torch.randn(256, 384), torch.randn(384, 256)
    exact = a @ b
    error = float((exact - (a.bfloat16() @ b.bfloat16()).float()).norm() / exact.norm())
    return {"speedup": round(statistics.median(ratios), 3), "relative_error": round(error, 5)}


def cache_file() -> Path:
    if os.environ.get("MTLIB_CACHE_DIR"):
        return Path(os.environ["MTLIB_CACHE_DIR"]) / "cpu_precision.json"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mtlib" / "cpu_precision.json"


def machine_key() -> str:
    text = json.dumps([cpu_model(), cpu_flags(), torch.__version__, platform.machine()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_cpu_measurement(path: Path | None = None) -> dict:
    """``measure_cpu_bf16()`` for this machine, measured once and kept in ``path`` (default ``cache_file()``)."""
    path = cache_file() if path is None else path
    key = machine_key()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(key), dict) and "speedup" in known[key]:
        return known[key]
    result = {**measure_cpu_bf16(), "cpu": cpu_model(), "flags": cpu_flags(), "torch": torch.__version__}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**known, key: result}, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: measured again next process, the choice is usually the same
    return result


def cpu_choice(measured: dict) -> Choice:
    """bf16 where the measured bf16 matmuls are >= ``MIN_SPEEDUP`` x fp32 and accurate, else fp32."""
    flags = ", ".join(measured.get("flags", [])) or "no bf16 instructions"
    what = f"CPU {measured.get('cpu', '?')} ({flags}): bf16 matmul {measured['speedup']:.2f}x fp32"
    if measured["speedup"] >= MIN_SPEEDUP and measured["relative_error"] <= MAX_RELATIVE_ERROR:
        return Choice("bf16", f"{what} (>= {MIN_SPEEDUP}x), relative error {measured['relative_error']:.1e}")
    return Choice("fp32", f"{what} (< {MIN_SPEEDUP}x or inaccurate)")


def cuda_choice(name: str, bf16_supported: bool) -> Choice:
    if bf16_supported:
        return Choice("bf16", f"CUDA {name} supports bf16")
    return Choice("fp16", f"CUDA {name} has no bf16: fp16 with a GradScaler")


@functools.cache
def _auto_cpu() -> Choice:
    return cpu_choice(cached_cpu_measurement())


def auto_choice(device: torch.device) -> Choice:
    """What ``precision: auto`` trains in on ``device``, and why."""
    if device.type == "cuda":
        return cuda_choice(torch.cuda.get_device_name(device), torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return _auto_cpu()
    return Choice("fp32", f"{device.type}: fp32 (no measured bf16 path)")
