"""Trainer: a RunConfig in, a run directory out.

    run_dir/config.yaml      the resolved config (and its hash in the folder name)
    run_dir/history.jsonl    one JSON row per event: train losses, per-epoch dev scores, gradient diagnostics
    run_dir/last.pt          checkpoint at the end of every epoch (resume point; removed when finished)
    run_dir/best.pt          the best model by dev mean
    run_dir/metrics.json     final dev scores (best checkpoint), timings, data provenance
    run_dir/predictions/     {sst,para,sts}-{dev,test}-output.csv in the course format

An interrupted run started again with the same config continues from ``last.pt``; a finished run is
never overwritten (``run`` returns it as it is).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mtlib import gradients as mgrad
from mtlib.batches import BatchStream, collate
from mtlib.config import RunConfig
from mtlib.evaluate import evaluate, load_data, predict  # noqa: F401 - also re-exported: mtlib.train.load_data, ...
from mtlib.metrics import write_predictions
from mtlib.model import MultitaskModel, smart_kind
from mtlib.runtime import (  # noqa: F401 - also re-exported: mtlib.train.autocast, ... keep working
    autocast,
    cpu_has_amx,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from mtlib.schedulers import TaskSampler

Callback = Callable[[dict], None]


# ------------------------------------------------------------------ the trainer
class Trainer:
    def __init__(self, cfg: RunConfig, callback: Callback | None = None):
        self.cfg = cfg
        self.callback = callback
        self.run_dir = cfg.run_dir()
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)

    # -- bookkeeping
    def log(self, row: dict, notify: bool = True) -> dict:
        row = {"wall": round(self.wall(), 3), **row}
        with open(self.run_dir / "history.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        self.history_lines += 1
        if notify and self.callback:
            self.callback(row)
        return row

    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    def run(self) -> Path:
        cfg = self.cfg
        metrics_path = self.run_dir / "metrics.json"
        if metrics_path.exists():
            print(f"[mtlib] {self.run_dir} is finished; not overwriting (change name/seed or delete it to re-run)")
            return self.run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = self.run_dir / "config.yaml"
        if cfg_path.exists():
            old = RunConfig.from_yaml(cfg_path)
            if old.config_hash() != cfg.config_hash():  # pragma: no cover - the hash names the folder
                raise RuntimeError(f"{cfg_path} holds a different config; refusing to mix runs")
        else:
            cfg_path.write_text(cfg.to_yaml())

        seed_everything(cfg.seed)
        self.data = load_data(cfg)
        from mtlib.backbones import load_backbone

        encoder, tokenizer = load_backbone(cfg.backbone, seed=cfg.seed)
        self.model = MultitaskModel(cfg, encoder, tokenizer).to(self.device)
        if cfg.init_checkpoint:
            self._load_init(cfg.init_checkpoint)
        self.t0, self.wall_before = time.perf_counter(), 0.0
        self.examples_seen = 0
        self.state = {"phase": 0, "epoch": 0, "best": -math.inf, "best_epoch": 0, "history_lines": 0}
        self.streams = {t: BatchStream(self.data["train"][t], cfg.batch_size[t], seed=cfg.seed + i)
                        for i, t in enumerate(cfg.tasks)}
        resume = self.run_dir / "last.pt"
        ckpt = torch.load(resume, map_location="cpu", weights_only=False) if resume.exists() else None
        self.history_lines = 0
        if ckpt is None:
            (self.run_dir / "history.jsonl").write_text("")
            self.log({"type": "start", "config_hash": cfg.config_hash(), "device": str(self.device),
                      "precision": self.precision, "params": self.model.parameter_counts(),
                      "data": self.data["provenance"]})
        else:
            self._restore_history(ckpt["state"]["history_lines"])
            self.log({"type": "resume", "phase": ckpt["state"]["phase"], "epoch": ckpt["state"]["epoch"]})

        phases = cfg.phase_configs()
        for pi, pcfg in enumerate(phases):
            if ckpt is not None and pi < ckpt["state"]["phase"]:
                continue
            self._run_phase(pi, pcfg, ckpt if (ckpt is not None and pi == ckpt["state"]["phase"]) else None)
            ckpt = None
        return self._finish()

    def _load_init(self, path: str) -> None:
        """Start from another run's best.pt; only PAL weights may be missing (they start neutral)."""
        if not Path(path).exists():
            raise FileNotFoundError(f"config: key 'init_checkpoint' points to a missing file: {path}")
        state = torch.load(path, map_location=self.device, weights_only=False)
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        bad = [k for k in missing if ".pals." not in f".{k}"] + list(unexpected)
        if bad:
            raise ValueError(f"{path} does not fit this model: {len(bad)} mismatched keys, e.g. {bad[:3]}")

    def _restore_history(self, lines: int) -> None:
        path = self.run_dir / "history.jsonl"
        kept = path.read_text().splitlines()[:lines]
        path.write_text("".join(l + "\n" for l in kept))
        self.history_lines = len(kept)

    # -- one phase
    def _run_phase(self, pi: int, pcfg: RunConfig, ckpt: dict | None) -> None:
        model, cfg = self.model, self.cfg
        self._apply_freeze(pcfg)
        head_ids = {id(p) for p in model.heads.parameters()}
        heads = [p for p in model.heads.parameters() if p.requires_grad]
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
        groups = [g for g in ({"params": rest, "lr": pcfg.lr},
                              {"params": heads, "lr": pcfg.head_lr or pcfg.lr}) if g["params"]]
        opt = torch.optim.AdamW(groups, lr=pcfg.lr, eps=1e-6, weight_decay=0.0)  # the original's AdamW
        per_update = self._batches_per_update(pcfg)
        updates_per_epoch = max(1, pcfg.batches_per_epoch // per_update)
        total = updates_per_epoch * pcfg.epochs
        from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

        warm = int(pcfg.warmup_ratio * total)
        sched = (get_linear_schedule_with_warmup(opt, warm, total) if pcfg.lr_schedule == "linear"
                 else get_constant_schedule_with_warmup(opt, warm))
        scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        sizes = {t: (len(self.data["train"][t]) if pcfg.pal_counts == "examples"
                     else len(self.data["train"][t]) // pcfg.batch_size[t]) for t in cfg.tasks}
        sampler = TaskSampler(pcfg.sampler, cfg.tasks, sizes, pcfg.epochs, seed=cfg.seed + 100 * pi,
                              k=pcfg.compromise_k)
        combiner = None
        if pcfg.gradient_method != "none":
            shared = [p for p in model.shared_parameters() if p.requires_grad]
            if not shared:
                raise ValueError(f"phase {pi}: gradient_method {pcfg.gradient_method!r} needs a trainable encoder "
                                 "(freeze is 'encoder'); set gradient_method: none in that phase")
            # The word-embedding table is kept row-sparse: same combination, a fraction of the traffic.
            self.task_grads = mgrad.TaskGradients(shared, len(cfg.tasks),
                                                  embeddings=[model.encoder.get_input_embeddings()])
            combiner = mgrad.make_combiner(pcfg.gradient_method, len(cfg.tasks), beta=pcfg.gradvac_beta,
                                           update=pcfg.gradvac_update)
        self.gen = torch.Generator().manual_seed(cfg.seed + 7 * pi)
        start_epoch, bad_epochs = 1, 0
        if ckpt is None:
            self.state.update(phase=pi, epoch=0, best=-math.inf, best_epoch=0)
        else:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            sampler.load_state_dict(ckpt["sampler"])
            for t, s in ckpt["streams"].items():
                self.streams[t].load_state_dict(s)
            if combiner is not None and ckpt.get("combiner"):
                combiner.load_state_dict(ckpt["combiner"])
            if scaler is not None and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            self.gen.set_state(ckpt["gen"])
            torch.set_rng_state(ckpt["torch_rng"])
            if self.device.type == "cuda" and ckpt.get("cuda_rng") is not None:  # dropout on the GPU
                torch.cuda.set_rng_state(ckpt["cuda_rng"], self.device)
            self.state = ckpt["state"]
            self.examples_seen, self.wall_before = ckpt["examples_seen"], ckpt["wall"]
            self.t0 = time.perf_counter()
            start_epoch, bad_epochs = self.state["epoch"] + 1, ckpt["bad_epochs"]
        name = cfg.phases[pi].get("name", f"phase{pi}") if cfg.phases else "train"
        from tqdm.auto import tqdm

        for epoch in range(start_epoch, pcfg.epochs + 1):
            if bad_epochs >= pcfg.patience:
                break
            sampler.set_epoch(epoch)
            model.train()
            counts = {t: 0 for t in cfg.tasks}
            bar = tqdm(range(updates_per_epoch), desc=f"{cfg.name} {name} epoch {epoch}/{pcfg.epochs}",
                       disable=not cfg.progress, leave=False)
            running = {t: [] for t in cfg.tasks}
            for step in bar:
                losses = self._update(pcfg, epoch, sampler, opt, scaler, combiner, counts)
                sched.step()
                for t, v in losses.items():
                    running[t].append(v)
                if (step + 1) % cfg.log_every == 0 or step + 1 == updates_per_epoch:
                    row = {t: float(np.mean(v)) for t, v in running.items() if v}
                    self.log({"type": "train", "phase": pi, "epoch": epoch, "step": step + 1,
                              "examples_seen": self.examples_seen, "lr": sched.get_last_lr()[0], "loss": row})
                    bar.set_postfix({t: f"{v:.3f}" for t, v in row.items()})
                    running = {t: [] for t in cfg.tasks}
            bar.close()
            scores, _ = evaluate(model, self.data["dev_sub"], cfg.eval_batch_size, self.device, self.precision)
            mean = -math.inf if math.isnan(scores["mean"]) else scores["mean"]
            improved = mean > self.state["best"] or self.state["best_epoch"] == 0  # each phase keeps a best model
            if improved:
                self.state.update(best=mean, best_epoch=epoch)
                torch.save(model.state_dict(), self.run_dir / "best.pt")
                bad_epochs = 0
            else:
                bad_epochs += 1
            self.state["epoch"] = epoch
            row = self.log({"type": "eval", "phase": pi, "phase_name": name, "epoch": epoch,
                            "examples_seen": self.examples_seen, **{k: float(v) for k, v in scores.items()},
                            "task_counts": counts, "probabilities": sampler.probabilities(), "improved": improved},
                           notify=False)
            self.state["history_lines"] = self.history_lines
            self._save_last(opt, sched, sampler, combiner, scaler, bad_epochs)
            # reported after the checkpoint: an interruption here resumes after this epoch
            if self.callback:
                self.callback(row)
            if cfg.progress:
                print(f"[{cfg.name}] {name} epoch {epoch}: " + " ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        # hand the phase's best model to the next phase (as the original's pretrain -> finetune)
        best = torch.load(self.run_dir / "best.pt", map_location=self.device, weights_only=False)
        model.load_state_dict(best)

    def _apply_freeze(self, pcfg: RunConfig) -> None:
        model = self.model
        for p in model.parameters():
            p.requires_grad_(True)
        if pcfg.freeze == "encoder":
            for p in model.encoder.parameters():
                p.requires_grad_(False)
            for p in model.pal_parameters():
                p.requires_grad_(True)  # PALs are task-specific: they train with the heads
        elif pcfg.freeze == "all_but_pals":
            from mtlib.pals import freeze_all_but_pals

            freeze_all_but_pals(model)
        if not pcfg.train_pals and pcfg.freeze != "all_but_pals":
            for p in model.pal_parameters():
                p.requires_grad_(False)

    def _batches_per_update(self, pcfg: RunConfig) -> int:
        if pcfg.compromise:
            return pcfg.compromise_k
        if pcfg.gradient_method != "none":
            return len(self.cfg.tasks)
        return 1

    # -- one optimizer update
    def _task_loss(self, pcfg: RunConfig, task: str) -> torch.Tensor:
        examples = self.streams[task].next()
        batch = collate(examples, self.model.tokenizer, self.cfg.pair_mode, self.device)
        with autocast(self.device, self.precision):
            out = self.model(task, batch)
            loss = self.model.loss(task, out, batch["labels"])
        if pcfg.smart_weight > 0 and "enc2" not in batch:
            # in fp32: under bf16 the output rounding is as large as the perturbation
            from mtlib.smart import smart_regularizer

            embeds = self.model.input_embeddings(batch)
            reg = smart_regularizer(lambda e: self.model(task, batch, inputs_embeds=e), embeds, out.float(),
                                    smart_kind(task), generator=self.gen, step_rule=pcfg.smart_step_rule)
            loss = loss + pcfg.smart_weight * reg
        self.examples_seen += len(examples)
        return loss

    def _backward(self, loss: torch.Tensor, scaler) -> None:
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def _update(self, pcfg, epoch, sampler, opt, scaler, combiner, counts) -> dict[str, float]:
        opt.zero_grad(set_to_none=True)
        losses: dict[str, float] = {}
        if combiner is None:  # single-task step
            task = sampler.next_task()
            counts[task] += 1
            loss = self._task_loss(pcfg, task)
            self._backward(loss, scaler)
            losses[task] = loss.item()
        else:
            tg = self.task_grads
            if pcfg.compromise:
                group = sampler.group(pcfg.compromise_k, pcfg.compromise_combine)
            else:
                group = list(self.cfg.tasks)
            here = {t: group.count(t) for t in self.cfg.tasks}
            for t in self.cfg.tasks:
                counts[t] += here[t]
            beta = mgrad.compromise_beta(epoch, pcfg.epochs) if pcfg.compromise_combine == "encourage" else 1.0
            n = counts if pcfg.compromise_counts == "cumulative" else here
            divisors = mgrad.compromise_weights(n, beta) if pcfg.compromise else dict.fromkeys(here, 1.0)
            for ti, task in enumerate(self.cfg.tasks):
                tg.begin(ti)  # shared grads of one task at a time, straight into its row; heads keep their own
                if here[task] == 0:
                    tg.store(ti)
                    continue
                total = 0.0
                for _ in range(here[task]):
                    loss = self._task_loss(pcfg, task) / divisors[task]
                    self._backward(loss, scaler)
                    total += loss.item()
                tg.store(ti)
                losses[task] = total
            stats = tg.combine(combiner, self.gen, names=self.cfg.tasks,
                               scale=scaler.get_scale() if scaler is not None else 1.0)
            self.log({"type": "grad", "epoch": epoch, "examples_seen": self.examples_seen, **stats,
                      "counts": here, "beta": beta})
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        return losses

    # -- checkpoints
    def _save_last(self, opt, sched, sampler, combiner, scaler, bad_epochs) -> None:
        ckpt = {"model": self.model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "sampler": sampler.state_dict(), "streams": {t: s.state_dict() for t, s in self.streams.items()},
                "combiner": combiner.state_dict() if combiner is not None else None,
                "scaler": scaler.state_dict() if scaler is not None else None, "gen": self.gen.get_state(),
                "torch_rng": torch.get_rng_state(), "state": dict(self.state), "bad_epochs": bad_epochs,
                "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                "examples_seen": self.examples_seen, "wall": self.wall()}
        tmp = self.run_dir / "last.pt.tmp"
        torch.save(ckpt, tmp)
        os.replace(tmp, self.run_dir / "last.pt")  # atomic: an interruption never leaves half a checkpoint

    def _finish(self) -> Path:
        cfg, model = self.cfg, self.model  # the last phase has already loaded its best.pt
        dev = self.data["dev"] if cfg.final_dev == "full" else self.data["dev_sub"]
        t = time.perf_counter()
        scores, preds = evaluate(model, dev, cfg.eval_batch_size, self.device, self.precision)
        eval_s = time.perf_counter() - t
        pred_dir = self.run_dir / "predictions"
        pred_dir.mkdir(exist_ok=True)
        for task, p in preds.items():
            write_predictions(pred_dir / f"{task}-dev-output.csv", task, [ex.id for ex in dev[task]], p)
            test = self.data["test"][task]
            if test:
                tp = predict(model, task, test, cfg.eval_batch_size, self.device, self.precision)
                write_predictions(pred_dir / f"{task}-test-output.csv", task, [ex.id for ex in test], tp)
        metrics = {"name": cfg.name, "seed": cfg.seed, "config_hash": cfg.config_hash(), "backbone": cfg.backbone,
                   "dev": {k: float(v) for k, v in scores.items()}, "dev_split": cfg.final_dev,
                   "best_epoch": self.state["best_epoch"], "best_dev_subsample_mean": self.state["best"],
                   "examples_seen": self.examples_seen, "train_seconds": round(self.wall(), 1),
                   "final_eval_seconds": round(eval_s, 1), "device": str(self.device), "precision": self.precision,
                   "data": self.data["provenance"], "params": model.parameter_counts()}
        self.log({"type": "final", **metrics["dev"]})
        tmp = self.run_dir / "metrics.json.tmp"
        tmp.write_text(json.dumps(metrics, indent=2))
        os.replace(tmp, self.run_dir / "metrics.json")
        (self.run_dir / "last.pt").unlink(missing_ok=True)
        if cfg.progress:
            print(f"[{cfg.name}] final dev ({cfg.final_dev}): " + " ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        return self.run_dir


def run(cfg: RunConfig, callback: Callback | None = None) -> Path:
    """Train and evaluate one config; returns its run directory (an existing finished run is returned as is)."""
    return Trainer(cfg, callback).run()
