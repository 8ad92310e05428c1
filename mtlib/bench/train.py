"""``python -m mtlib bench train``: training speed of mtlib's step kinds against a plain transformers loop and
against the machine's measured matmul peak, in one process.

Every row trains the same sentences: each draws its batches from task streams seeded alike (sst, para, sts
round-robin, batch sizes sst 32 / para 16 / sts 32 unless told), through the trainer's own pieces
(``build_phase``: sampler, step kind, fused AdamW, autocast). Rows and precisions are interleaved within each
repetition and medians are reported, so a process that shares the CPU slows every row alike: read the
ratios first. Examples/s counts distinct training examples; model-FLOP utilisation (MFU) counts the FLOPs of
the *real* tokens (padding is waste) against the measured matmul peak of the same precision.
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field

import torch

from mtlib.bench.hardware import PeakMemory, matmul_peak, release_memory, sync, training_flops
from mtlib.bench.plain import PlainLoop
from mtlib.data import parse
from mtlib.data.batches import BatchStream
from mtlib.data.tokens import cached_encodings
from mtlib.model.backbones import load_backbone, load_tokenizer
from mtlib.model.multitask import ModelConfig, MultitaskModel
from mtlib.experiments.resolve import resolve_config
from mtlib.machine.accel import configure_backends
from mtlib.machine.capability import cpu_flags, cpu_model
from mtlib.train.phase import build_phase
from mtlib.machine.runtime import casts_kept, precision_reason, resolve_device, resolve_precision

BACKBONES = ("minilm-l6", "bert-base")  # bert-base: random weights in bert-base-uncased's shape (none offline)
ROWS = {  # name -> (label, kind, batching)
    "plain-random": ("transformers loop, random batches", "plain", "random"),
    "plain": ("transformers loop, mtlib's batches", "plain", "length"),
    "single-random": ("mtlib single-task, random batches", "single", "random"),
    "single": ("mtlib single-task (round robin)", "single", "length"),
    "pcgrad": ("mtlib PCGrad", "pcgrad", "length"),
    "gradvac": ("mtlib GradVac", "gradvac", "length"),
    "compromise": ("mtlib Gradient Compromise", "compromise", "length"),
    "single-padded": ("mtlib single-task, padded encoder", "single", "length"),
    "pcgrad-padded": ("mtlib PCGrad, padded encoder", "pcgrad", "length"),
    "single-eager": ("mtlib single-task, eager attention", "single", "length"),
    "single-compiled": ("mtlib single-task, torch.compile", "single", "length"),
}
DEFAULT_ROWS = (
    "plain-random",
    "plain",
    "single-random",
    "single",
    "single-padded",
    "pcgrad",
    "pcgrad-padded",
    "gradvac",
    "compromise",
)
STEP_CHANGES = {
    "single": {"gradient_method": "none", "sampler": "round_robin"},
    "pcgrad": {"gradient_method": "pcgrad"},
    "gradvac": {"gradient_method": "gradvac"},
    "compromise": {"gradient_method": "gradvac", "compromise": True},
}


class RecordingStream(BatchStream):
    """A BatchStream that remembers the batches it handed out (to count their examples and tokens)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start, self.recorded = self.state_dict(), []

    def next(self):
        batch = super().next()
        self.recorded.append(batch)
        return batch

    def rewind(self) -> None:
        self.load_state_dict(self.start)
        self.recorded = []


@dataclass
class Setup:
    cfg: object
    model: MultitaskModel
    train: dict
    device: torch.device
    batches_per_task: int
    peaks: dict = field(default_factory=dict)


def build(backbone: str, batch_size: dict, batches_per_task: int, device: str, data_dir: str | None = None) -> Setup:
    cfg = resolve_config(
        "quick",
        batch_size=batch_size,
        progress=False,
        device=device,
        seed=11711,
        data_dir=data_dir,
        backbone="minilm-l6" if backbone == "bert-base" else backbone,
    )
    if backbone == "bert-base":
        from transformers import BertConfig, BertModel

        torch.manual_seed(cfg.seed)
        tokenizer = load_tokenizer("minilm-l6")  # bert-base-uncased's vocabulary
        encoder = BertModel(BertConfig(vocab_size=tokenizer.vocab_size), add_pooling_layer=True)
    else:
        encoder, tokenizer = load_backbone(backbone, seed=cfg.seed)
    dev = resolve_device(cfg.device)
    configure_backends(dev)  # what a run does: TF32 for the fp32 matmuls on CUDA
    model = MultitaskModel(ModelConfig.of(cfg), encoder, tokenizer).to(dev).train()
    train = {
        t: parse.filter_by_length(
            parse.load_split(t, "train", cfg.data_dir, quora_train=cfg.quora_train), cfg.max_chars
        )
        for t in cfg.tasks
    }
    return Setup(cfg, model, train, dev, batches_per_task)


def _streams(s: Setup, batching: str) -> dict:
    return {
        t: RecordingStream(s.train[t], s.cfg.batch_size[t], seed=s.cfg.seed + i, batching=batching)
        for i, t in enumerate(s.cfg.tasks)
    }


def _variant(s: Setup, row: str) -> MultitaskModel:
    if row.endswith("-padded"):  # transformers' own forward over every padded slot (unpad: false)
        model = copy.copy(s.model)
        model.unpadded = False
        return model
    if row == "single-eager":
        model = copy.deepcopy(s.model)
        model.encoder.set_attn_implementation("eager")
        return model
    if row == "single-compiled":
        model = copy.deepcopy(s.model)
        model.encoder.compile(dynamic=True)
        return model
    return s.model


def _mtlib_runner(s: Setup, row: str, kind: str, streams: dict, precision: str):
    pcfg = s.cfg.replace(**STEP_CHANGES[kind])
    sizes = {t: len(s.train[t]) for t in s.cfg.tasks}
    phase = build_phase(0, "bench", pcfg, True, _variant(s, row), streams, sizes, s.device, precision, s.cfg.seed)
    n_tasks = len(s.cfg.tasks)
    updates = {
        "single": n_tasks * s.batches_per_task,
        "pcgrad": s.batches_per_task,
        "gradvac": s.batches_per_task,
        "compromise": max(1, round(n_tasks * s.batches_per_task / pcfg.compromise_k)),
    }[kind]

    def update() -> None:  # what Trainer._update does
        phase.optimizer.zero_grad(set_to_none=True)
        with casts_kept(precision):
            phase.step(1)
        phase.apply_update()

    return update, updates


def _plain_runner(s: Setup, streams: dict, precision: str):
    loop = PlainLoop(s.model.encoder, s.model.tokenizer, s.device, precision, lr=s.cfg.lr)
    tasks = list(s.cfg.tasks)
    order = iter(range(10**9))

    def update() -> None:
        task = tasks[next(order) % len(tasks)]
        loop.step(task, streams[task].next())

    return update, len(tasks) * s.batches_per_task


def measure_row(s: Setup, row: str, precision: str) -> dict:
    """One timed repetition of a row: seconds, distinct examples, real and padded tokens, FLOPs, peak memory."""
    _, kind, batching = ROWS[row]
    streams = _streams(s, batching)
    runner = _plain_runner if kind == "plain" else _mtlib_runner
    update, updates = runner(s, streams, precision) if kind == "plain" else runner(s, row, kind, streams, precision)
    update()  # warm-up: optimizer state, kernel choice, first allocations (and compilation)
    for stream in streams.values():
        stream.rewind()
    with PeakMemory(s.device) as memory:
        sync(s.device)
        start = time.perf_counter()
        for _ in range(updates):
            update()
        sync(s.device)
        seconds = time.perf_counter() - start
    lengths, padded, examples = [], 0, 0
    for stream in streams.values():
        for batch in stream.recorded:
            per_example = cached_encodings(batch, s.model.tokenizer, s.cfg.pair_mode)
            examples += len(batch)
            for j in range(len(per_example[0])):
                sizes = [len(e[j]["input_ids"]) for e in per_example]
                lengths += sizes
                padded += max(sizes) * len(sizes)
    del update
    release_memory()
    return {
        "seconds": seconds,
        "examples": examples,
        "tokens": sum(lengths),
        "padded": padded,
        "flops": training_flops(lengths, s.model.encoder.config),
        "rss": memory.peak,
        "device_memory": memory.device_peak,
    }


def bench_train(
    backbone: str = "minilm-l6",
    precisions: tuple[str, ...] = ("auto",),
    batches_per_task: int = 3,
    repeats: int = 3,
    rows: tuple[str, ...] = DEFAULT_ROWS,
    batch_size: dict | None = None,
    device: str = "auto",
    data_dir: str | None = None,
) -> dict:
    batch_size = batch_size or {"sst": 32, "para": 16, "sts": 32}
    s = build(backbone, batch_size, batches_per_task, device, data_dir)
    resolved = list(dict.fromkeys(resolve_precision(p, s.device) for p in precisions))
    config = s.model.encoder.config
    _header(s, backbone, batch_size, repeats, precisions, resolved)
    runs: dict = {}
    peaks: dict = {}
    for rep in range(repeats):  # the peak too is measured in every repetition, beside the rows it divides
        for p in dict.fromkeys(["fp32", *resolved]):
            peaks.setdefault(p, []).append(
                matmul_peak(p, config.hidden_size, config.intermediate_size, s.device)["peak"]
            )
        for p in resolved:
            for row in rows:
                runs.setdefault((p, row), []).append(measure_row(s, row, p))
        done = ", ".join(
            f"{p} {row} {runs[(p, row)][-1]['examples'] / runs[(p, row)][-1]['seconds']:.1f}"
            for p in resolved
            for row in rows
        )
        print(f"  repetition {rep + 1}/{repeats} (examples/s): {done}", flush=True)
    s.peaks = {p: statistics.median(v) for p, v in peaks.items()}
    print(
        "matmul peak: "
        + ", ".join(f"{p} {v:,.0f} GFLOP/s" for p, v in s.peaks.items())
        + " (best of the encoder's feed-forward shapes at 1,024 tokens and a large square; median over repetitions)"
    )
    results = {key: summarize(reps, s.peaks[key[0]]) for key, reps in runs.items()}
    print_table(results, rows, resolved)
    return {"rows": results, "peaks": s.peaks}


def summarize(reps: list[dict], peak: float) -> dict:
    seconds = statistics.median(r["seconds"] for r in reps)
    first = reps[0]  # the same batches in every repetition
    out = {
        "seconds": seconds,
        "tokens": first["tokens"],
        "examples_per_s": first["examples"] / seconds,
        "tokens_per_s": first["tokens"] / seconds,
        "padded_per_real": first["padded"] / first["tokens"],
        "gflops": first["flops"] / seconds / 1e9,
        "rss_gb": max(r["rss"] for r in reps) / 1e9,
        "examples": first["examples"],
    }
    out["mfu"] = out["gflops"] / peak
    if first["device_memory"] is not None:
        out["device_memory_gb"] = max(r["device_memory"] for r in reps) / 1e9
    return out


def _header(s: Setup, backbone, batch_size, repeats, precisions, resolved) -> None:
    config = s.model.encoder.config
    params = sum(p.numel() for p in s.model.encoder.parameters()) / 1e6
    where = (
        f"{torch.cuda.get_device_name(s.device)}"
        if s.device.type == "cuda"
        else f"{cpu_model()} ({', '.join(cpu_flags()) or 'no bf16 instructions'}), {torch.get_num_threads()} threads"
    )
    sizes = ", ".join(f"{t} {b}" for t, b in batch_size.items())
    print(
        f"[bench train] backbone {backbone} ({params:.1f}M encoder parameters, {config.num_hidden_layers} layers x "
        f"{config.hidden_size}), device {s.device}: {where}"
    )
    print(
        f"batches {sizes}; {s.batches_per_task} batches per task per row; {repeats} repetitions, rows "
        "interleaved, medians; every row trains the same sentences"
    )
    if "auto" in precisions:
        print(f"precision auto -> {resolve_precision('auto', s.device)}: {precision_reason('auto', s.device)}")


def print_table(results: dict, rows, precisions) -> None:
    memory = "device GB" if any("device_memory_gb" in r for r in results.values()) else "peak RSS GB"
    print(
        f"\n{'prec':5s} {'row':37s} {'ex/s':>7s} {'tokens/s':>9s} {'pad/real':>8s} {'GFLOP/s':>8s} {'MFU':>6s} "
        f"{memory:>11s} {'vs loop':>8s} {'vs single':>9s}"
    )
    for p in precisions:
        base = results.get((p, "plain-random"))
        single = results.get((p, "single"))
        for row in rows:
            r = results[(p, row)]
            vs_loop = f"{r['examples_per_s'] / base['examples_per_s']:.2f}x" if base else "-"
            vs_single = f"{r['examples_per_s'] / single['examples_per_s']:.2f}x" if single else "-"
            mem = r.get("device_memory_gb", r["rss_gb"])
            print(
                f"{p:5s} {ROWS[row][0]:37s} {r['examples_per_s']:7.1f} {r['tokens_per_s']:9,.0f} "
                f"{r['padded_per_real']:8.2f} {r['gflops']:8.1f} {r['mfu']:6.1%} {mem:11.2f} {vs_loop:>8s} "
                f"{vs_single:>9s}"
            )
    if len(precisions) > 1:
        a, b = precisions[0], precisions[-1]
        ratios = [results[(b, r)]["examples_per_s"] / results[(a, r)]["examples_per_s"] for r in rows]
        print(f"{b} / {a} examples/s per row: " + ", ".join(f"{r} {x:.2f}x" for r, x in zip(rows, ratios)))
    print(
        "ex/s: distinct training examples per second; pad/real: padded token slots per real token; MFU: model "
        "FLOPs of the real tokens / measured matmul peak; peak RSS: the whole process (data and model included)"
    )
