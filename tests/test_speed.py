"""Speed machinery: precision by measured capability (CPU and mocked CUDA), length-bucketed batches that stay
random and resume exactly, cached tokenization equal to ``collate``, the fused AdamW, speed in metrics.json
and the results provenance. (Speed itself is measured by ``python -m mtlib bench train``, not here.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mtlib.data import parse
from mtlib.data.batches import BatchStream, collate
from mtlib.data.bucketing import example_lengths, length_bucketed
from mtlib.data.tokens import encode_batch
from mtlib.model.backbones import load_tokenizer
from mtlib.results.scores import speed_line
from mtlib.machine import capability, runtime
from mtlib.machine.accel import adamw_options, configure_backends
from mtlib.train.speed import SpeedMeter
from mtlib.train.trainer import run


# ------------------------------------------------------------------ precision
@pytest.mark.parametrize("speedup,error,expected", [(2.0, 3e-3, "bf16"), (1.05, 3e-3, "fp32"), (3.0, 0.5, "fp32")])
def test_cpu_choice_follows_the_measurement_not_the_brand(speedup, error, expected):
    choice = capability.cpu_choice({"speedup": speedup, "relative_error": error, "cpu": "Some CPU", "flags": []})
    assert choice.precision == expected
    assert f"{speedup:.2f}x" in choice.reason and "Some CPU" in choice.reason


@pytest.mark.parametrize(
    "bf16,speedup,expected", [(True, 1.6, "bf16"), (True, 0.8, "fp32"), (False, 1.3, "fp16"), (False, 0.9, "fp32")]
)
def test_cuda_choice_follows_the_measured_step(bf16, speedup, expected):
    choice = capability.cuda_choice("Some GPU", bf16, {"speedup": speedup})
    assert choice.precision == expected
    assert f"{speedup:.2f}x" in choice.reason and "Some GPU" in choice.reason
    assert ("fp32 with TF32 matmuls" in choice.reason) == (expected == "fp32")


def test_cuda_auto_measures_once_per_gpu_model(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(capability, "cache_file", lambda: tmp_path / "cpu_precision.json")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Old GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)

    def measure(device, half, rounds=15):
        calls.append(half)
        return {"speedup": 0.7, "half": "float16", "rounds": rounds}

    monkeypatch.setattr(capability, "measure_cuda_half", measure)
    capability._auto_cuda.cache_clear()
    try:
        assert capability.auto_choice(torch.device("cuda")).precision == "fp32"
        capability._auto_cuda.cache_clear()
        assert capability.auto_choice(torch.device("cuda")).precision == "fp32"
    finally:
        capability._auto_cuda.cache_clear()
    assert calls == [torch.float16]  # the second process read the cached measurement
    assert "Old GPU" in (tmp_path / "cuda_precision.json").read_text()


def test_auto_precision_and_its_reason_come_from_the_capability(monkeypatch):
    monkeypatch.setattr(runtime, "auto_choice", lambda device: capability.Choice("bf16", "measured"))
    assert runtime.resolve_precision("auto", torch.device("cpu")) == "bf16"
    assert runtime.precision_reason("auto", torch.device("cpu")) == "measured"
    assert runtime.precision_reason("fp32", torch.device("cpu")) == "precision: fp32 set in the config"


def test_the_measurement_is_cached_per_machine(monkeypatch, tmp_path):
    calls = []

    def measure():
        calls.append(1)
        return {"speedup": 1.9, "relative_error": 1e-3}

    monkeypatch.setattr(capability, "measure_cpu_bf16", measure)
    path = tmp_path / "cache.json"
    first = capability.cached_cpu_measurement(path)
    second = capability.cached_cpu_measurement(path)
    assert first == second and first["speedup"] == 1.9 and len(calls) == 1
    assert capability.machine_key() in json.loads(path.read_text())


def test_a_real_measurement_is_sane():
    m = capability.measure_cpu_bf16(rounds=1)
    assert m["speedup"] > 0 and 0 <= m["relative_error"] < 0.05


# ------------------------------------------------------------------ batches
def test_length_buckets_are_a_permutation_with_the_random_tail_kept():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=1003)
    order = rng.permutation(1003)
    out = length_bucketed(order, lengths, 8, np.random.default_rng(1), pool_batches=4)
    assert sorted(out.tolist()) == list(range(1003))
    assert out[-3:].tolist() == order[-3:].tolist()  # the dropped tail: random examples, not the longest
    batches = out[:1000].reshape(-1, 8)
    spread = (lengths[batches].max(1) - lengths[batches].min(1)).mean()
    random_spread = (lengths[order[:1000].reshape(-1, 8)].max(1) - lengths[order[:1000].reshape(-1, 8)].min(1)).mean()
    assert spread < random_spread / 3


def test_bucketed_streams_pad_less_stay_random_and_resume_exactly(small_data_dir):
    examples = parse.load_split("sst", "train", str(small_data_dir))
    lengths = example_lengths(examples)

    def padding(stream):
        batches = [stream.next() for _ in range(20)]
        return np.mean([max(lengths[[examples.index(e) for e in b]]) for b in batches])

    assert padding(BatchStream(examples, 8, seed=3, batching="length")) < padding(BatchStream(examples, 8, seed=3))
    a, b = BatchStream(examples, 8, seed=3, batching="length"), BatchStream(examples, 8, seed=4, batching="length")
    assert [e.id for e in a.next()] != [e.id for e in b.next()]  # seeds give other batches
    for _ in range(len(examples) // 8):  # past a reshuffle
        a.next()
    state = json.loads(json.dumps(a.state_dict()))
    expected = [[e.id for e in a.next()] for _ in range(30)]
    c = BatchStream(examples, 8, seed=99, batching="length")
    c.load_state_dict(state)
    assert [[e.id for e in c.next()] for _ in range(30)] == expected


@pytest.mark.parametrize("task", ["sst", "para", "sts"])
@pytest.mark.parametrize("pair_mode", ["concat_sentences", "concat_embed"])
def test_cached_encodings_equal_collate(small_data_dir, task, pair_mode):
    tokenizer = load_tokenizer("tiny-random")
    examples = parse.load_split(task, "train", str(small_data_dir))[:40]
    for start in (0, 8, 0, 24):  # the second 0: now from the cache
        batch = examples[start : start + 16]
        want, got = collate(batch, tokenizer, pair_mode), encode_batch(batch, tokenizer, pair_mode)
        for key in ("enc", "enc2"):
            assert (key in want) == (key in got)
            if key in want:
                assert want[key].keys() == got[key].keys()
                for k in want[key]:
                    assert torch.equal(want[key][k], got[key][k]), (key, k)
        assert torch.equal(want["labels"], got["labels"]) and want["ids"] == got["ids"]
        masks = [want[k]["attention_mask"] for k in ("enc", "enc2") if k in want]
        assert got["n_tokens"] == sum(int(m.sum()) for m in masks)
        assert got["n_padded"] == sum(m.numel() for m in masks)


# ------------------------------------------------------------------ optimizer and backends
def test_fused_adamw_matches_the_foreach_update():
    assert adamw_options(torch.device("cpu")) == {"fused": True}
    assert adamw_options(torch.device("cuda")) == {"fused": True}
    assert adamw_options(torch.device("mps")) == {"foreach": True}
    torch.manual_seed(0)
    weights = [torch.randn(50, 20), torch.randn(20)]
    grads = [[torch.randn_like(w) for w in weights] for _ in range(5)]
    results = []
    for options in ({"foreach": True}, adamw_options(torch.device("cpu"))):
        params = [w.clone().requires_grad_() for w in weights]
        opt = torch.optim.AdamW(params, lr=1e-2, eps=1e-6, weight_decay=0.0, **options)
        for g in grads:
            for p, gi in zip(params, g):
                p.grad = gi.clone()
            opt.step()
        results.append([p.detach() for p in params])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_tf32_only_on_cuda():
    before = torch.backends.cuda.matmul.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision
    try:
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        configure_backends(torch.device("cpu"))
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        configure_backends(torch.device("cuda"))  # only flags: no GPU needed
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
        assert torch.backends.mkldnn.matmul.fp32_precision == before[1]  # CPU fp32 matmuls stay fp32
    finally:
        torch.backends.cuda.matmul.fp32_precision = before[0]


# ------------------------------------------------------------------ speed reports
def test_speed_meter_state_round_trip():
    meter = SpeedMeter()
    meter.phases["train"] = {
        "train_seconds": 2.0,
        "examples": 100,
        "tokens": 3000,
        "padded_tokens": 4000,
        "updates": 5,
        "eval_seconds": 1.0,
        "eval_examples": 50,
    }
    again = SpeedMeter(json.loads(json.dumps(meter.state_dict())))
    report = again.report()
    assert report["train"]["examples_per_s"] == 50 and report["train"]["tokens_per_s"] == 1500
    assert report["train"]["padding"] == 0.25 and report["train"]["eval_examples_per_s"] == 50
    assert report["all"]["examples"] == 100


def test_every_run_reports_its_speed(smoke_cfg):
    cfg = smoke_cfg.replace(
        phases=(
            {"name": "pretrain", "freeze": "encoder", "epochs": 1, "batches_per_epoch": 2},
            {"name": "finetune", "epochs": 1, "batches_per_epoch": 3},
        )
    )
    metrics = json.loads((run(cfg) / "metrics.json").read_text())
    speed = metrics["speed"]
    assert set(speed) == {"pretrain", "finetune", "all"}
    for phase in ("pretrain", "finetune"):
        assert speed[phase]["examples_per_s"] > 0 and speed[phase]["tokens_per_s"] > speed[phase]["examples_per_s"]
        assert speed[phase]["eval_examples_per_s"] > 0
    assert speed["pretrain"]["updates"] == 2 and speed["finetune"]["updates"] == 3
    assert speed["all"]["examples"] == metrics["examples_seen"]
    assert metrics["precision_reason"] == "precision: fp32 set in the config"
    line = speed_line([metrics])
    assert line.startswith("Speed: training ") and "examples/s" in line and "cpu fp32" in line


def test_speed_line_without_speed():
    assert "not recorded" in speed_line([{"device": "cpu", "precision": "fp32"}])


# ------------------------------------------------------------------ the benchmark
def test_bench_train_rows_train_the_same_sentences(small_data_dir, capsys, monkeypatch):
    from mtlib.bench import train as bench
    from mtlib.bench.train import DEFAULT_ROWS, bench_train

    monkeypatch.setattr(bench, "matmul_peak", lambda *a, **k: {"peak": 50.0})  # the real one: ~2 s of matmuls
    out = bench_train(
        "tiny-random",
        ("fp32",),
        batches_per_task=1,
        repeats=1,
        data_dir=str(small_data_dir),
        batch_size={"sst": 4, "para": 4, "sts": 4},
    )
    rows = out["rows"]
    assert set(rows) == {("fp32", r) for r in DEFAULT_ROWS} and out["peaks"]["fp32"] == 50.0
    for r in rows.values():
        assert r["examples_per_s"] > 0 and r["mfu"] > 0 and r["rss_gb"] > 0 and r["padded_per_real"] >= 1
    same = [rows[("fp32", r)] for r in ("plain", "single", "pcgrad", "gradvac")]
    assert len({(r["examples"], r["tokens"]) for r in same}) == 1  # the same batches, whatever the step kind
    assert rows[("fp32", "plain-random")]["examples"] == rows[("fp32", "single-random")]["examples"]
    assert rows[("fp32", "single")]["padded_per_real"] <= rows[("fp32", "single-random")]["padded_per_real"]
    text = capsys.readouterr().out
    assert "matmul peak: fp32 50 GFLOP/s" in text and "mtlib PCGrad" in text and "vs loop" in text


def test_matmul_peak_and_model_flops():
    from mtlib.bench.hardware import matmul_peak, training_flops
    from mtlib.model.backbones import tiny_config

    peak = matmul_peak("fp32", 64, 128, torch.device("cpu"), rounds=1)
    assert peak["peak"] == max(peak["model"], peak["model-T"], peak["square"]) > 0
    config = tiny_config(100)  # 2 layers x 64, 128 wide feed-forward
    per_token = 2 * 2 * (4 * 64 * 64 + 2 * 64 * 128)
    assert training_flops([10, 3], config) == 3 * (per_token * 13 + 4 * 2 * 64 * (100 + 9))
