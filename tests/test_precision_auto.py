"""``precision: auto`` decides in well under 2 s on any CPU (issue 19): fp32 without timing anything where the CPU
has no native bf16 instructions, a bounded measurement where it has, a note while it measures, and cache entries of
the earlier, unbounded measurement measured again."""

from __future__ import annotations

import json
import time

import pytest
import torch

from mtlib.machine import capability, runtime

AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC 7B13 64-Core Processor\nflags\t\t: fpu sse2 avx avx2 fma\n"
WITH_BF16 = "processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16 amx_bf16\n"
REAL_FLAGS = capability.cpu_flags()  # this machine's, read before any test fakes /proc/cpuinfo


def _no_timing(*args, **kwargs):
    raise AssertionError("timed a matmul")


@pytest.fixture(autouse=True)
def _fresh_auto(monkeypatch, tmp_path):
    """An empty cache in tmp_path, and no choice remembered from another test."""
    monkeypatch.setenv("MTLIB_CACHE_DIR", str(tmp_path / "cache"))
    capability._auto_cpu.cache_clear()
    yield
    capability._auto_cpu.cache_clear()


def test_a_cpu_without_native_bf16_gets_fp32_without_a_measurement(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(capability, "_cpuinfo", lambda: AVX2_ONLY)
    for timer in ("measure_cpu_bf16", "product_seconds", "matmul_seconds"):
        monkeypatch.setattr(capability, timer, _no_timing)
    start = time.perf_counter()
    choice = capability.cpu_auto_choice(tmp_path / "cpu_precision.json")
    assert time.perf_counter() - start < 0.2
    assert choice.precision == "fp32"
    assert choice.reason == (
        "CPU AMD EPYC 7B13 64-Core Processor has no native bf16 instructions "
        "(no amx_bf16/avx512_bf16/bf16): fp32, not measured"
    )
    assert not (tmp_path / "cpu_precision.json").exists() and "timing bf16" not in capsys.readouterr().out
    # the same through the runtime, as a run resolves it
    assert runtime.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert runtime.precision_reason("auto", torch.device("cpu")) == choice.reason


def test_a_cpu_with_bf16_flags_is_measured_within_the_budget_and_cached(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(capability, "_cpuinfo", lambda: WITH_BF16)  # measured for real (emulated bf16: the probe)
    path = tmp_path / "cpu_precision.json"
    start = time.perf_counter()
    choice = capability.cpu_auto_choice(path)
    seconds = time.perf_counter() - start
    assert seconds < 2.0, seconds
    assert "precision auto: timing bf16 against fp32 on this CPU" in capsys.readouterr().out
    assert choice.precision in ("bf16", "fp32")
    assert "CPU Some Xeon (amx_bf16, avx512_bf16): bf16 matmul" in choice.reason and "x fp32" in choice.reason
    entry = json.loads(path.read_text())[capability.machine_key()]
    assert entry["method"] == capability.METHOD and entry["seconds"] < 2.0 and entry["speedup"] > 0
    if REAL_FLAGS:  # a CPU that really has AMX or AVX-512 BF16 (as the one this was written on): bf16
        assert choice.precision == "bf16", entry
    # cached: the second decision times nothing and says nothing
    monkeypatch.setattr(capability, "measure_cpu_bf16", _no_timing)
    assert capability.cpu_auto_choice(path) == choice
    assert "timing bf16" not in capsys.readouterr().out


def test_an_entry_of_the_earlier_unbounded_measurement_is_measured_again_once(monkeypatch, tmp_path):
    path = tmp_path / "cpu_precision.json"
    path.write_text(json.dumps({capability.machine_key(): {"speedup": 0.9, "relative_error": 1e-3, "cpu": "x"}}))
    calls = []

    def measure():
        calls.append(1)
        return {"speedup": 3.0, "relative_error": 3e-3, "rounds": 20, "seconds": 1.0}

    monkeypatch.setattr(capability, "measure_cpu_bf16", measure)
    first = capability.cached_cpu_measurement(path)
    second = capability.cached_cpu_measurement(path)
    assert len(calls) == 1 and first == second and first["speedup"] == 3.0 and first["method"] == capability.METHOD


def test_emulated_bf16_ends_the_measurement_at_the_probe(monkeypatch):
    shapes = []

    def product_seconds(a, b, repeats=1):
        shapes.append((a.shape[0], a.shape[1], b.shape[1]))
        return 1.0 if a.dtype == torch.bfloat16 else 0.01  # bf16 at 0.01x fp32, as on an AVX2-only EPYC

    monkeypatch.setattr(capability, "product_seconds", product_seconds)
    m = capability.measure_cpu_bf16()
    assert m["rounds"] == 0 and m["speedup"] == 0.01 and set(shapes) == {capability.PROBE_SHAPE}
    assert capability.cpu_choice({**m, "cpu": "x", "flags": []}).precision == "fp32"


def test_the_rounds_stop_at_the_budget():
    assert capability.measure_cpu_bf16(budget_s=0.0, shapes=((64, 64, 64),))["rounds"] == 1  # one round always
    assert capability.measure_cpu_bf16(rounds=3, budget_s=60.0, shapes=((64, 64, 64),))["rounds"] == 3


@pytest.mark.parametrize(
    "machine,probes,expected",
    [
        ("arm64", None, False),  # an Apple-silicon Mac: fp32, not measured
        ("AMD64", (False, False), False),  # Windows x86 without AVX-512 BF16/AMX, as torch's CPU probe says
        ("x86_64", (True, False), True),
        ("x86_64", "missing", None),  # an x86 CPU this torch cannot describe: the bounded measurement decides
    ],
)
def test_without_proc_cpuinfo(monkeypatch, machine, probes, expected):
    monkeypatch.setattr(capability, "_cpuinfo", lambda: None)
    monkeypatch.setattr(capability.platform, "machine", lambda: machine)
    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    if probes == "missing":
        for name in names:
            monkeypatch.delattr(torch.cpu, name, raising=False)
    elif probes is not None:
        for name, value in zip(names, probes):
            monkeypatch.setattr(torch.cpu, name, lambda value=value: value)
    assert capability.native_bf16() is expected
    assert capability.cpu_flags() == []
