"""The step kinds: what one optimizer update does.

- ``SingleTaskStep``: the sampler picks a task, one batch, backward, step (random, round_robin, pal).
- ``CombinedStep``: one batch of every task; each task's gradient of the shared encoder lands in one row of
  a ``[T, D]`` buffer, a gradient method (sum, PCGrad, GradVac) combines the rows into one update, the heads
  keep their own task's gradient; one step.
- ``CompromiseStep``: Gradient Compromise, a ``CombinedStep`` over K batches drawn by ``pal_control`` whose
  per-task losses are divided by ``n_t ** beta`` (docs/original.md §5).

Every step raises ``NumericFault`` when a loss or gradient is not finite, before the optimizer moves.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mtlib.data.tokens import encode_batch
from mtlib.model.keyed_dropout import keyed_dropout
from mtlib.model.multitask import keyed_seed
from mtlib.methods import gradients as mgrad
from mtlib.methods.loss_weighting import NO_LOSS_WEIGHTING
from mtlib.machine.runtime import autocast


class NumericFault(FloatingPointError):
    """A loss or gradient that is not finite; ``where`` names the phase, epoch, step and task."""

    def __init__(self, what: str, task: str | None = None):
        self.what, self.task, self.where = what, task, {}
        super().__init__(what)

    def locate(self, **where) -> "NumericFault":
        self.where = {**where, **({"task": self.task} if self.task else {})}
        place = ", ".join(f"{k} {v}" for k, v in self.where.items())
        self.args = (f"{self.what} at {place}",)
        return self


@dataclass
class StepResult:
    losses: dict[str, float]  # task -> loss of this update (summed over its batches)
    counts: dict[str, int]  # task -> batches in this update
    stats: dict | None = None  # conflict diagnostics of a combined step
    examples: int = 0


@dataclass
class BatchLoss:
    """Turns a task's next batch into its loss (with SMART when the phase asks for it)."""

    model: torch.nn.Module
    streams: dict
    device: torch.device
    precision: str
    smart_weight: float = 0.0
    smart_step_rule: str = "smart_pytorch"
    generator: torch.Generator | None = None
    seed: int | None = None  # the run's: each batch's dropout masks from (seed, task, batch index)
    keyed: bool = False  # dropout_rng: keyed (mtlib.model.keyed_dropout) instead of torch's generator
    examples: int = field(default=0)
    tokens: int = 0  # real (non-padding) input tokens of this process's batches, counted on the host
    padded_tokens: int = 0
    shard: object = None  # N processes: this rank's part of each batch (mtlib.train.distributed.BatchShard)

    def __call__(self, task: str) -> Tensor:
        index = self.streams[task].drawn
        whole = self.streams[task].next()
        key = keyed_seed(self.seed, "batch", task, index) if self.seed is not None else None
        if key is not None and not self.keyed:  # dropout masks keyed by the seed, task and batch: paired across rows
            torch.manual_seed(key)
        self.examples += len(whole)
        examples = self.shard.take(whole) if self.shard is not None else whole
        batch = encode_batch(examples, self.model.tokenizer, self.model.cfg.pair_mode, self.device)
        self.tokens, self.padded_tokens = self.tokens + batch["n_tokens"], self.padded_tokens + batch["n_padded"]
        smart = self.smart_weight > 0 and "enc2" not in batch
        pack = getattr(self.model, "pack", None)
        if pack is not None:  # trained beside other runs as one batched model (mtlib.runs.packed)
            return pack.loss(self.model, task, batch, key if self.keyed else None, self.precision)
        # The paper's SMART step moves the input by ~1e-3 of its scale, below bf16's resolution: such steps run
        # in fp32. Otherwise the clean and the perturbed outputs share one precision (no rounding floor).
        precision = "fp32" if smart and self.smart_step_rule == "paper" else self.precision
        with autocast(self.device, precision), keyed_dropout(key if self.keyed else None):
            out = self.model(task, batch)
            loss = self.model.loss(task, out, batch["labels"])
            if smart:
                from mtlib.model.multitask import smart_kind
                from mtlib.methods.smart import smart_regularizer

                embeds = self.model.input_embeddings(batch)
                reg = smart_regularizer(
                    lambda e: self.model(task, batch, inputs_embeds=e),
                    embeds,
                    out,
                    smart_kind(task),
                    generator=self.generator,
                    step_rule=self.smart_step_rule,
                )
                loss = loss + self.smart_weight * reg
        return loss if self.shard is None else self.shard.global_loss(loss, len(examples), len(whole))


def _finite_loss(loss: Tensor, task: str) -> float:
    value = loss.item()
    if not math.isfinite(value):
        raise NumericFault(f"non-finite loss {value}", task)
    return value


def _backward(loss: Tensor, scaler) -> None:
    (scaler.scale(loss) if scaler is not None else loss).backward()


class SingleTaskStep:
    sync = None  # N processes: sums the gradients over ranks (mtlib.train.distributed.GradientSync)
    loss_weighting = NO_LOSS_WEIGHTING  # the phase's (mtlib.methods.loss_weighting): multipliers on each loss

    def __init__(self, batch_loss: BatchLoss, sampler, tasks: list[str], params: list, scaler=None):
        self.batch_loss, self.sampler, self.tasks, self.scaler = batch_loss, sampler, tasks, scaler
        self.params = params

    def __call__(self, epoch: int) -> StepResult:
        task = self.sampler.next_task()
        before = self.batch_loss.examples
        loss = self.batch_loss(task)
        value = _finite_loss(loss, task)
        _backward(self.loss_weighting.weigh(task, loss, value), self.scaler)
        if self.sync is not None:
            self.sync.reduce_private()
        if self.scaler is None:  # under fp16 a GradScaler skips non-finite steps by design
            grads = [p.grad for p in self.params if p.grad is not None]
            if grads and not torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum()):
                raise NumericFault("non-finite gradient", task)
        self.loss_weighting.update({task: value}, {task: 1}, epoch)
        return StepResult({task: value}, {task: 1}, examples=self.batch_loss.examples - before)


class CombinedStep:
    """One batch of every task, per-task gradients of the shared encoder combined by ``combiner``."""

    sync = None  # N processes: sums the heads' gradients over ranks (TaskGradients sums the rows)
    loss_weighting = NO_LOSS_WEIGHTING
    combine_seconds = 0.0  # host time in combine() (the speed meter's combine_share; on CUDA it includes waiting)

    def __init__(
        self,
        batch_loss: BatchLoss,
        task_grads: mgrad.TaskGradients,
        combiner: mgrad.GradientCombiner,
        tasks: list[str],
        generator: torch.Generator,
        scaler=None,
    ):
        self.batch_loss, self.task_grads, self.combiner = batch_loss, task_grads, combiner
        self.tasks, self.generator, self.scaler = tasks, generator, scaler

    def group(self, epoch: int) -> tuple[dict[str, int], dict[str, float]]:
        """(batches per task, loss divisor per task) of this update."""
        return dict.fromkeys(self.tasks, 1), dict.fromkeys(self.tasks, 1.0)

    def __call__(self, epoch: int) -> StepResult:
        counts, divisors = self.group(epoch)
        tg, losses, before = self.task_grads, {}, self.batch_loss.examples
        for ti, task in enumerate(self.tasks):
            tg.begin(ti)  # task t's backward accumulates straight into row t; heads keep their own .grad
            total = 0.0
            for _ in range(counts[task]):
                loss = self.batch_loss(task) / divisors[task]
                total += (value := _finite_loss(loss, task))
                _backward(self.loss_weighting.weigh(task, loss, value), self.scaler)
            tg.store(ti)
            if counts[task]:
                losses[task] = total
        start = time.perf_counter()
        stats = self.combine()
        self.combine_seconds += time.perf_counter() - start
        if not all(math.isfinite(v) for v in stats["norms"].values()):
            bad = [t for t, v in stats["norms"].items() if not math.isfinite(v)]
            raise NumericFault("non-finite gradient", bad[0])
        if self.loss_weighting.tasks:  # the multipliers this update used, then the weighting's own step
            stats["loss_weights"] = {t: self.loss_weighting.scale(t, losses.get(t, 1.0)) for t in self.tasks}
        self.loss_weighting.update(losses, counts, epoch)
        return StepResult(losses, counts, stats, self.batch_loss.examples - before)

    def combine(self) -> dict:
        """The gradient method on the ``[T, D]`` per-task gradients; the update goes to the parameters'
        ``.grad``; returns the conflict diagnostics of this update."""
        grads = self.task_grads.gradients()  # [T, D_active]: row t = task t's gradient of the shared encoder
        if self.sync is not None:  # the heads (and PALs): their own task's gradient, summed over ranks
            self.sync.reduce_private()
        scale = self.scaler.get_scale() if self.scaler is not None else 1.0
        if scale != 1.0:  # angles, norms and GradVac's targets see the true gradients
            grads.div_(scale)
        update = self.combiner(grads, generator=self.generator, out=self.task_grads.update_buffer)  # [D_active]
        if scale != 1.0:
            update.mul_(scale)  # the scaler unscales it again in its own step
        self.task_grads.write(update)
        return mgrad.conflict_stats(grads, names=self.tasks, gram=self.combiner.last_gram)


class CompromiseStep(CombinedStep):
    """Gradient Compromise: K batches drawn by ``pal_control`` (every task at least once), per-task losses
    divided by ``n_t ** beta`` with beta rising from 0.2 to 1 over the epochs."""

    def __init__(
        self, *args, sampler, k: int, combine: str, counts: str, num_epochs: int, divide: bool = True, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.sampler, self.k, self.combine_mode, self.count_mode = sampler, k, combine, counts
        self.divide = divide  # False: the PAL-sampled groups without the n_t^beta divisors (an ablation)
        self.num_epochs = num_epochs
        self.epoch_counts: dict[str, int] = dict.fromkeys(self.tasks, 0)
        self.epoch = 0
        self.beta = 1.0

    def group(self, epoch: int) -> tuple[dict[str, int], dict[str, float]]:
        if epoch != self.epoch:
            self.epoch, self.epoch_counts = epoch, dict.fromkeys(self.tasks, 0)
        names = self.sampler.group(self.k, self.combine_mode)
        here = {t: names.count(t) for t in self.tasks}
        for t in self.tasks:
            self.epoch_counts[t] += here[t]
        self.beta = mgrad.compromise_beta(epoch, self.num_epochs) if self.combine_mode == "encourage" else 1.0
        n = self.epoch_counts if self.count_mode == "cumulative" else here  # cumulative: the original's bug
        return here, mgrad.compromise_weights(n, self.beta if self.divide else 0.0)
