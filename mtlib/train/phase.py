"""One phase of a run: its optimizer, schedule, scaler, sampler, step kind and progress, in one object."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from mtlib.config.run_config import RunConfig
from mtlib.methods import gradients as mgrad
from mtlib.machine.accel import adamw_options
from mtlib.model.freeze import apply_freeze
from mtlib.methods.loss_weighting import make_loss_weighting
from mtlib.methods.samplers import TaskSampler
from mtlib.train.steps import BatchLoss, CombinedStep, CompromiseStep, SingleTaskStep


@dataclass
class Progress:
    """Where a phase stands; saved in every checkpoint (plain numbers)."""

    epoch: int = 0  # last finished epoch
    best: float = -math.inf  # best dev-subsample mean of this phase
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best one (early stopping)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}


@dataclass
class Phase:
    index: int
    name: str
    cfg: RunConfig
    last: bool  # the run's last phase: its best model is the run's best.pt
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: TaskSampler
    step: SingleTaskStep | CombinedStep
    generator: torch.Generator
    scaler: torch.amp.GradScaler | None
    updates_per_epoch: int
    progress: Progress = field(default_factory=Progress)

    @property
    def combiner(self) -> mgrad.GradientCombiner | None:
        return getattr(self.step, "combiner", None)

    def uses_sampler_probabilities(self) -> bool:
        """Single-task PAL steps and compromise groups draw from the PAL probabilities; others ignore them."""
        return isinstance(self.step, CompromiseStep) or (
            isinstance(self.step, SingleTaskStep) and self.cfg.sampler in ("pal", "pal_control")
        )

    def apply_update(self) -> None:
        """The optimizer and schedule step after a step kind's backward (through the GradScaler under fp16)."""
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()

    def state_dict(self) -> dict:
        combiner = self.combiner
        return {
            "index": self.index,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "generator": self.generator.get_state(),
            "combiner": combiner.state_dict() if combiner is not None else {},
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "progress": self.progress.state_dict(),
            "loss_weighting": self.step.loss_weighting.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.generator.set_state(state["generator"])
        if self.combiner is not None and state["combiner"]:
            self.combiner.load_state_dict(state["combiner"])
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(**state["progress"])
        if state.get("loss_weighting"):
            self.step.loss_weighting.load_state_dict(state["loss_weighting"])


def build_phase(
    index: int,
    name: str,
    pcfg: RunConfig,
    last: bool,
    model,
    streams: dict,
    sizes: dict,
    device: torch.device,
    precision: str,
    seed: int,
) -> Phase:
    """Freeze what the phase does not train, then build its optimizer, schedule, sampler and step kind."""
    apply_freeze(model, pcfg.freeze, pcfg.train_pals)
    model.set_dropout(pcfg.hidden_dropout)
    optimizer = _optimizer(model, pcfg)
    per_update = pcfg.compromise_k if pcfg.compromise else len(pcfg.tasks) if pcfg.gradient_method != "none" else 1
    updates_per_epoch = max(1, pcfg.batches_per_epoch // per_update)
    scheduler = _schedule(optimizer, pcfg, updates_per_epoch * pcfg.epochs)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    counts = {t: sizes[t] if pcfg.pal_counts == "examples" else sizes[t] // pcfg.batch_size[t] for t in pcfg.tasks}
    sampler = TaskSampler(pcfg.sampler, pcfg.tasks, counts, pcfg.epochs, seed=seed + 100 * index, k=pcfg.compromise_k)
    generator = torch.Generator().manual_seed(seed + 7 * index)
    for t, stream in streams.items():
        stream.batch_size = pcfg.batch_size[t]
    batch_loss = BatchLoss(
        model,
        streams,
        device,
        precision,
        pcfg.smart_weight,
        pcfg.smart_step_rule,
        generator,
        seed=seed,
        keyed=pcfg.dropout_rng == "keyed",
    )
    tasks = list(pcfg.tasks)
    if pcfg.gradient_method == "none":
        trainable = [p for p in model.parameters() if p.requires_grad]
        step = SingleTaskStep(batch_loss, sampler, tasks, trainable, scaler)
    else:
        shared = [p for p in model.shared_parameters() if p.requires_grad]
        if not shared:
            raise ValueError(
                f"phases[{index}] ({name}): gradient_method {pcfg.gradient_method!r} needs a trainable "
                "encoder (freeze is 'encoder'); set gradient_method: none in that phase"
            )
        # The word-embedding table is kept row-sparse: the same combination, a fraction of the memory traffic.
        task_grads = mgrad.TaskGradients(shared, len(tasks), embeddings=[model.encoder.get_input_embeddings()])
        combiner = mgrad.make_combiner(
            pcfg.gradient_method, len(tasks), beta=pcfg.gradvac_beta, update=pcfg.gradvac_update, c=pcfg.cagrad_c
        )
        if pcfg.compromise:
            step = CompromiseStep(
                batch_loss,
                task_grads,
                combiner,
                tasks,
                generator,
                scaler,
                sampler=sampler,
                k=pcfg.compromise_k,
                combine=pcfg.compromise_combine,
                counts=pcfg.compromise_counts,
                num_epochs=pcfg.epochs,
                divide=pcfg.compromise_divide,
            )
        else:
            step = CombinedStep(batch_loss, task_grads, combiner, tasks, generator, scaler)
    if pcfg.loss_weighting != "none":
        step.loss_weighting = make_loss_weighting(pcfg)
    return Phase(index, name, pcfg, last, optimizer, scheduler, sampler, step, generator, scaler, updates_per_epoch)


def _optimizer(model, pcfg: RunConfig) -> torch.optim.Optimizer:
    head_ids = {id(p) for p in model.heads.parameters()}
    heads = [p for p in model.heads.parameters() if p.requires_grad]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [
        g for g in ({"params": rest, "lr": pcfg.lr}, {"params": heads, "lr": pcfg.head_lr or pcfg.lr}) if g["params"]
    ]
    device = next(model.parameters()).device  # the original's AdamW, through torch's fastest implementation
    return torch.optim.AdamW(groups, lr=pcfg.lr, eps=1e-6, weight_decay=0.0, **adamw_options(device))


def _schedule(optimizer, pcfg: RunConfig, total: int):
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    warm = int(pcfg.warmup_ratio * total)
    if pcfg.lr_schedule == "linear":
        return get_linear_schedule_with_warmup(optimizer, warm, total)
    return get_constant_schedule_with_warmup(optimizer, warm)
