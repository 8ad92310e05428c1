"""``python -m mtlib bench gradients --profile quick``: one update of every gradient method (sum, PCGrad, GradVac
and torchjd's Gramian weightings) on the same three batches (one per task), and the combination step alone:
storing the T per-task gradients in the flat buffer, combining, the conflict diagnostics and writing the update
back (everything except the T forward/backward passes and the optimizer step). "solve" is the T x T part alone
(the coefficients from the Gram matrix: torchjd's QP / cvxpy / Frank-Wolfe for the aggregators). The dense layout
(for comparison) is measured for the paper's three methods only: the others differ from them only in that solve.
"""

from __future__ import annotations

import statistics
import time

import torch

from mtlib.methods import gradients as mgrad
from mtlib.bench.hardware import sync as _sync
from mtlib.data.batches import collate
from mtlib.experiments.resolve import resolve_config
from mtlib.machine.runtime import autocast, resolve_device, resolve_precision
from mtlib.train.steps import CombinedStep


def _setup(profile: str):
    from mtlib import data as mdata
    from mtlib.model.backbones import load_backbone
    from mtlib.model.multitask import ModelConfig, MultitaskModel

    cfg = resolve_config(profile, n_hidden_layers=1)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    encoder, tokenizer = load_backbone(cfg.backbone, seed=cfg.seed)
    model = MultitaskModel(ModelConfig.of(cfg), encoder, tokenizer).to(device).train()
    batches = {}
    for task in cfg.tasks:
        examples = mdata.load_split(task, "train", cfg.data_dir, quora_train=cfg.quora_train)
        batches[task] = collate(examples[: cfg.batch_size[task]], tokenizer, cfg.pair_mode, device)
    return cfg, model, batches, device, precision


def bench_gradients(profile: str = "quick", repeats: int = 5) -> dict:
    cfg, model, batches, device, precision = _setup(profile)
    shared = model.shared_parameters()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-12, eps=1e-6, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    sizes = ", ".join(f"{t} {b['labels'].shape[0]}" for t, b in batches.items())
    table = model.encoder.get_input_embeddings()
    print(
        f"[bench] backbone {cfg.backbone}, D = {sum(p.numel() for p in shared):,} shared parameters "
        f"({table.weight.numel():,} in the word embeddings), device {device}, {precision}, batches {sizes}, "
        f"threads {torch.get_num_threads()}"
    )
    results = {}
    # "row-sparse" is what the trainer does; "dense" flattens every embedding row, for comparison.
    for layout, tables in (("row-sparse", [table]), ("dense", [])):
        tg = mgrad.TaskGradients(shared, len(cfg.tasks), embeddings=tables)
        for method in mgrad.COMBINERS if layout == "row-sparse" else ("sum", "pcgrad", "gradvac"):
            combiner = mgrad.make_combiner(method, len(cfg.tasks))
            step = CombinedStep(None, tg, combiner, list(cfg.tasks), gen)
            update_s, combine_s = [], []
            for rep in range(repeats + 1):  # the first repetition warms up
                _sync(device)
                t_update = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                combine = 0.0
                for ti, task in enumerate(cfg.tasks):
                    t = time.perf_counter()
                    tg.begin(ti)
                    combine += time.perf_counter() - t
                    with autocast(device, precision):
                        out = model(task, batches[task])
                        loss = model.loss(task, out, batches[task]["labels"])
                    loss.backward()
                    _sync(device)
                    t = time.perf_counter()
                    tg.store(ti)
                    _sync(device)
                    combine += time.perf_counter() - t
                t = time.perf_counter()
                step.combine()  # what the trainer runs after the T backward passes
                _sync(device)
                combine += time.perf_counter() - t
                opt.step()
                _sync(device)
                if rep:
                    update_s.append(time.perf_counter() - t_update)
                    combine_s.append(combine)
            solve_s = []
            for _ in range(repeats if combiner.last_gram is not None else 0):
                t = time.perf_counter()
                combiner.coefficients(combiner.last_gram, gen)
                solve_s.append(time.perf_counter() - t)
            results[(layout, method)] = {
                "update_s": statistics.median(update_s),
                "width": tg.active_dim,
                "combine_s": statistics.median(combine_s),
                "solve_s": statistics.median(solve_s) if solve_s else 0.0,
            }
    print(
        f"\n{'layout':10s} {'method':10s} {'buffer row':>11s} {'update (s)':>11s} {'combination (s)':>16s} "
        f"{'share':>7s} {'solve (ms)':>10s}"
    )
    for (layout, method), r in results.items():
        r["share"] = r["combine_s"] / r["update_s"]
        print(
            f"{layout:10s} {method:10s} {r['width']:11,d} {r['update_s']:11.3f} {r['combine_s']:16.4f} "
            f"{r['share']:7.1%} {1e3 * r['solve_s']:10.2f}"
        )
    print(
        f"(median of {repeats}; combination = zeroing each task's buffer row + storing + gathering the touched "
        "embedding rows + combining + conflict diagnostics + writing back; row-sparse is what training uses)"
    )
    return results
