"""What this machine computes fastest: the measured choice behind ``precision: auto``.

A CPU's brand says little (AMX Intel, AVX-512-BF16 AMD and AVX2-only CPUs all exist), so ``auto`` on a CPU
first asks whether it has native bf16 instructions at all: where it has none, bf16 is emulated (about 0.01x
fp32 on an AVX2-only EPYC) and ``auto`` is fp32 without a measurement. Where it has them, ``auto`` times bf16
against fp32 matmuls at an encoder's shapes for about a second and trains in bf16 only where bf16 is clearly
faster and its result is close to fp32's. The measurement is cached on disk per CPU model, instruction flags
and torch version, so every run on one machine resolves to the same precision (and the same run id) even when
a later measurement on a busy CPU would have come out differently. On CUDA a MiniLM-shaped training step is
timed in fp32 with TF32 matmuls against autocast to bf16 (fp16 with a GradScaler where there is no bf16), once
per GPU model, and half precision is chosen only where it is clearly faster: a small model's step is bound by
kernel launches there, and autocast adds cast kernels (slower per run on an H200). Every choice comes with a
one-line reason for metrics.json.
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

from mtlib.rundir.atomic import atomic_write

# CPU instructions with native bf16 dot products, as /proc/cpuinfo names them: x86 (AMX, AVX-512) and Arm
# (ARMv8.6 BFDOT/BFMMLA, e.g. Graviton3). No x86 flag is named plain "bf16".
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
MIN_SPEEDUP = 1.15  # bf16 must beat fp32 clearly: a marginal gain is not worth bf16's coarser rounding
MAX_RELATIVE_ERROR = 2e-2  # bf16 keeps 8 bits of mantissa: ~4e-3 per product, less after fp32 accumulation
# (rows, inner, outer) of a bert-base encoder's feed-forward matmuls at a typical batch of 16 x 36 tokens: the
# shapes that dominated the earlier, unbounded measurement's sum (which added MiniLM's and 1152-row ones), and
# large enough (~1.4 GFLOP) that a thread waiting for a busy core adds little to one product's time
SHAPES = ((576, 768, 3072), (576, 3072, 768))
PROBE_SHAPE = (256, 384, 256)  # small: even emulated bf16 (~0.01x fp32) takes ~50 ms a product
BUDGET_S = 1.0  # from the probe on: no round begins after it (the last one may end ~0.1 s past it)
METHOD = "bounded-v2"  # cache entries of another method (v1: 4 shapes x 5 rounds, unbounded) are measured again


@dataclass(frozen=True)
class Choice:
    precision: str
    reason: str


def _cpuinfo() -> str | None:
    """/proc/cpuinfo's text; None where there is none (not Linux)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return None


def cpu_flags() -> list[str]:
    """The bf16-related instruction flags of this CPU (Linux /proc/cpuinfo; empty elsewhere)."""
    words = set((_cpuinfo() or "").split())
    return [f for f in BF16_FLAGS if f in words]


def cpu_model() -> str:
    for line in (_cpuinfo() or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def native_bf16() -> bool | None:
    """Whether this CPU has native bf16 instructions; None where that cannot be told without a measurement.

    Linux: its /proc/cpuinfo flags. Elsewhere on x86 (Windows, an Intel Mac): torch's own CPU feature probe
    (cpuinfo, cross-platform) where this torch has it. Elsewhere off x86 (an Apple-silicon Mac): False, since
    torch's CPU bf16 matmul there has no oneDNN fast path and fp32 is the safe choice; a run that wants bf16
    says ``precision: bf16``. None (an x86 CPU torch cannot describe) gets the bounded measurement, whose
    probe stops early where bf16 is emulated.
    """
    if _cpuinfo() is not None:
        return bool(cpu_flags())
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86"):
        probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        if all(callable(p) for p in probes):
            try:
                return any(p() for p in probes)
            except RuntimeError:
                return None
        return None
    return False


def product_seconds(a: torch.Tensor, b: torch.Tensor, repeats: int = 1) -> float:
    """Median seconds of ``a @ b`` over ``repeats`` products (the caller has already made one)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_seconds(dtype: torch.dtype, shape: tuple[int, int, int], repeats: int = 3) -> float:
    """Median seconds of one (m x k) @ (k x n) product in ``dtype`` on the CPU."""
    m, k, n = shape
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    a @ b  # first call: oneDNN picks and caches its kernel
    return product_seconds(a, b, repeats)


def measure_cpu_bf16(
    rounds: int = 100, budget_s: float = BUDGET_S, shapes: tuple[tuple[int, int, int], ...] = SHAPES
) -> dict:
    """bf16 against fp32 at ``shapes``: speed-up (fp32 time / bf16 time per round, fp32 and bf16 interleaved
    product by product, median over rounds, so a process sharing the CPU slows both alike) and the relative
    error of one bf16 product. At most ``rounds`` rounds, none begun after ``budget_s`` seconds (one round
    always runs). A single-threaded probe at ``PROBE_SHAPE`` comes first and ends the measurement there where
    bf16 is emulated (< 0.5x fp32), so an emulated bf16 costs ~0.25 s, not seconds a product."""
    start = time.perf_counter()
    m, k, n = PROBE_SHAPE
    a, b = torch.randn(m, k), torch.randn(k, n)
    a16, b16 = a.bfloat16(), b.bfloat16()
    exact, approx = a @ b, (a16 @ b16).float()  # also the warm-up of both probe products
    error = round(float((exact - approx).norm() / exact.norm()), 5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: a busy core cannot hold a product up waiting for its partner thread
    try:
        probe = product_seconds(a, b, 3) / product_seconds(a16, b16, 3)
    finally:
        torch.set_num_threads(threads)
    if probe < 0.5:  # emulated bf16 is ~0.01x; native bf16 at least matches fp32 (2-5x with AMX, busy or not)
        return {
            "speedup": round(probe, 3),
            "relative_error": error,
            "rounds": 0,
            "seconds": round(time.perf_counter() - start, 3),
        }
    pairs = []
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        a16, b16 = a.bfloat16(), b.bfloat16()
        a @ b, a16 @ b16  # first call: oneDNN picks and caches its kernel
        pairs.append(((a, b), (a16, b16)))
    ratios = []
    while len(ratios) < max(rounds, 1) and (not ratios or time.perf_counter() - start < budget_s):
        fp32 = bf16 = 0.0
        for single, half in pairs:
            fp32 += product_seconds(*single)
            bf16 += product_seconds(*half)
        ratios.append(fp32 / bf16)
    return {
        "speedup": round(statistics.median(ratios), 3),
        "relative_error": error,
        "rounds": len(ratios),
        "seconds": round(time.perf_counter() - start, 3),
    }


def cache_file() -> Path:
    if os.environ.get("MTLIB_CACHE_DIR"):
        return Path(os.environ["MTLIB_CACHE_DIR"]) / "cpu_precision.json"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mtlib" / "cpu_precision.json"


def machine_key() -> str:
    text = json.dumps([cpu_model(), cpu_flags(), torch.__version__, platform.machine()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_cpu_measurement(path: Path | None = None) -> dict:
    """``measure_cpu_bf16()`` for this machine, measured once and kept in ``path`` (default ``cache_file()``).
    An entry of another ``METHOD`` (an earlier, unbounded measurement) is measured again and replaced."""
    path = cache_file() if path is None else path
    key = machine_key()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    entry = known.get(key)
    if isinstance(entry, dict) and entry.get("method") == METHOD and "speedup" in entry:
        return entry
    print("[mtlib] precision auto: timing bf16 against fp32 on this CPU (once per machine, < 2 s) ...", flush=True)
    result = {
        **measure_cpu_bf16(),
        "cpu": cpu_model(),
        "flags": cpu_flags(),
        "torch": torch.__version__,
        "method": METHOD,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({**known, key: result}, indent=1))
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


def cpu_auto_choice(path: Path | None = None) -> Choice:
    """``precision: auto`` on this CPU: fp32 without a measurement where it has no native bf16 instructions,
    else the cached (or a new, bounded) measurement's choice."""
    if native_bf16() is False:
        return Choice(
            "fp32", f"CPU {cpu_model()} has no native bf16 instructions (no {'/'.join(BF16_FLAGS)}): fp32, not measured"
        )
    return cpu_choice(cached_cpu_measurement(path))


# A MiniLM-shaped training step (the default backbone, the gpu profile's batch of 32 x ~48 tokens): what bf16
# autocast must beat on a GPU, where a small model's step is bound by kernel launches and autocast adds casts.
CUDA_STEP = {"layers": 6, "hidden": 384, "intermediate": 1536, "tokens": 32 * 48}
CUDA_METHOD = "step-v1"


def measure_cuda_half(device: torch.device, half: torch.dtype, rounds: int = 15) -> dict:
    """A MiniLM-shaped stack of feed-forward blocks, forward and backward, in fp32 (TF32 matmuls) against
    autocast to ``half``: the speed-up (fp32 time / half time, interleaved rounds, median) of one step."""
    layers, hidden, inter, tokens = (CUDA_STEP[k] for k in ("layers", "hidden", "intermediate", "tokens"))
    blocks = torch.nn.Sequential(
        *[
            torch.nn.Sequential(
                torch.nn.Linear(hidden, inter),
                torch.nn.GELU(),
                torch.nn.Linear(inter, hidden),
                torch.nn.LayerNorm(hidden),
            )
            for _ in range(layers)
        ]
    ).to(device)
    x = torch.randn(tokens, hidden, device=device)

    def step(dtype) -> float:
        torch.cuda.synchronize(device)
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            blocks(x).float().square().mean().backward()
        torch.cuda.synchronize(device)
        return time.perf_counter() - t

    for dtype in (None, half, None, half):  # warm-up: kernels chosen, caches filled
        step(dtype)
    ratios = [step(None) / step(half) for _ in range(rounds)]
    return {"speedup": round(statistics.median(ratios), 3), "half": str(half).replace("torch.", ""), "rounds": rounds}


def cuda_choice(name: str, bf16_supported: bool, measured: dict | None = None) -> Choice:
    """bf16 (or fp16 with a GradScaler where there is no bf16) only where a measured training step in it is
    >= ``MIN_SPEEDUP`` x the fp32 step with TF32 matmuls; else fp32 with TF32."""
    half = "bf16" if bf16_supported else "fp16"
    if measured is None:
        return Choice(half, f"CUDA {name}: {half} (not measured)")
    what = f"CUDA {name}: a MiniLM-shaped step under {half} autocast ran {measured['speedup']:.2f}x the fp32/TF32 step"
    if measured["speedup"] >= MIN_SPEEDUP:
        return Choice(half, f"{what} (>= {MIN_SPEEDUP}x)")
    return Choice("fp32", f"{what} (< {MIN_SPEEDUP}x): fp32 with TF32 matmuls")


def cached_cuda_measurement(device: torch.device, path: Path | None = None) -> dict:
    """``measure_cuda_half`` for this GPU model and torch, measured once and kept beside the CPU's."""
    path = (cache_file().parent / "cuda_precision.json") if path is None else path
    name = torch.cuda.get_device_name(device)
    key = hashlib.sha256(json.dumps([name, torch.__version__, CUDA_METHOD]).encode()).hexdigest()[:16]
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    known = known if isinstance(known, dict) else {}
    if isinstance(known.get(key), dict) and "speedup" in known[key]:
        return known[key]
    print(f"[mtlib] precision auto: timing half precision against fp32/TF32 on {name} (once per GPU model) ...")
    half = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    result = {**measure_cuda_half(device, half), "gpu": name, "torch": torch.__version__, "method": CUDA_METHOD}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({**known, key: result}, indent=1))
    except OSError:
        pass
    return result


@functools.cache
def _auto_cuda(device: torch.device) -> Choice:
    name, bf16 = torch.cuda.get_device_name(device), torch.cuda.is_bf16_supported()
    return cuda_choice(name, bf16, cached_cuda_measurement(device))


@functools.cache
def _auto_cpu() -> Choice:
    return cpu_auto_choice()


def auto_choice(device: torch.device) -> Choice:
    """What ``precision: auto`` trains in on ``device``, and why."""
    if device.type == "cuda":
        return _auto_cuda(device)
    if device.type == "cpu":
        return _auto_cpu()
    return Choice("fp32", f"{device.type}: fp32 (no measured bf16 path)")
