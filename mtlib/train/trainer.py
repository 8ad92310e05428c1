"""Trainer: a RunConfig in, a run directory out (its files: ``mtlib.rundir``).

A run is a list of phases (``RunConfig.phase_configs``); each phase trains for its epochs, evaluates on the
dev subsample after each one, keeps its best model and hands it to the next phase. ``last.pt`` is written
at the end of every epoch; a run started again with the same config resumes from it, whatever point the
interruption hit, and ends with the same history, metrics and best.pt as an uninterrupted run. A finished
run is never overwritten. A non-finite loss or gradient stops the run, marked failed, before the
optimizer moves; its last good checkpoint stays.
"""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mtlib.config.run_config import RunConfig
from mtlib.data.batches import BatchStream
from mtlib.data.metrics import write_predictions
from mtlib.model.backbones import load_backbone
from mtlib.model.multitask import ModelConfig, MultitaskModel
from mtlib.rundir import CheckpointError, RunLocked, load_checkpoint, model_state
from mtlib.rundir.atomic import fault_point
from mtlib.rundir.schema import EvalRow, FinalRow, GradRow, HistoryRow, Metrics, StartRow, TrainRow
from mtlib.train import shared_phases
from mtlib.train.distributed import attach, on_this_rank, rank_device, run_directory
from mtlib.machine.accel import prepare_model
from mtlib.machine.allocator import tune_malloc
from mtlib.train.code_version import code_version
from mtlib.train.evaluate import evaluate, predict, reported_scores
from mtlib.train.identity import run_id, run_identity, run_dir_for
from mtlib.train.progress_bar import epoch_bar
from mtlib.train.phase import Phase, build_phase
from mtlib.train.run_data import load_run_data
from mtlib.train.run_state import RunState, load_training_state
from mtlib.machine.runtime import casts_kept, precision_reason, resolve_device, resolve_precision, seed_everything
from mtlib.train.steps import NumericFault
from mtlib.train.tensorboard_events import with_tensorboard

Callback = Callable[[dict], None]


class Trainer:
    def __init__(self, cfg: RunConfig, callback: Callback | None = None, pack=None):
        """``pack``: the run's handle on a pack of runs computed as one batched model (``mtlib.runs.pack``)."""
        self.cfg, self.callback = on_this_rank(cfg, callback)  # under torchrun: rank 0 reports
        self.pack = pack
        self.device = rank_device(resolve_device(cfg.device))
        self.precision = resolve_precision(cfg.precision, self.device)
        self.identity = run_identity(cfg)
        self.dir = run_directory(run_dir_for(cfg, self.identity))  # other ranks read it, never write
        self.run_dir = self.dir.path

    # ------------------------------------------------------------------ the run
    def run(self) -> Path:
        if self.dir.finished():
            return self._already_finished()
        with self.dir.lock():
            if self.dir.finished():  # finished while we waited for the lock
                return self._already_finished(locked=True)
            if self.cfg.threads:
                torch.set_num_threads(self.cfg.threads)
            if self.device.type == "cpu":
                tune_malloc()  # page-fault-free reuse of activation buffers (mtlib.machine.allocator)
            resume = self._open()
            self._build(resume)
            try:
                phases = self.cfg.phase_configs()
                start = self.state.phase if resume else shared_phases.adopt(self, len(phases))
                for pi in range(start, len(phases)):
                    self._run_phase(pi, phases[pi], resume if pi == start else None)
                return self._finish()
            except (NumericFault, CheckpointError) as err:
                self._mark_failed(err)
                raise

    def _already_finished(self, locked: bool = False) -> Path:
        if any(self.dir.path.glob("phase*-best.pt")) or self.dir.last.exists():
            if locked:
                self.dir.remove_leftovers()
            else:
                try:
                    with self.dir.lock():
                        self.dir.remove_leftovers()  # a kill between metrics.json and the clean-up
                except RunLocked:
                    pass  # the holder is cleaning up itself; the run is finished either way
        if self.cfg.progress:
            print(f"[mtlib] {self.run_dir} is finished; not overwriting (change name/seed or delete it to re-run)")
        return self.run_dir

    def _open(self) -> dict | None:
        """The resume point (``last.pt``), or a fresh start that writes config.yaml and identity.json."""
        remedy = f"Delete {self.dir.last} to start this run over."
        resume = load_checkpoint(self.dir.last, remedy=remedy) if self.dir.last.exists() else None
        if resume is not None and resume.get("run_id") != run_id(self.identity):
            raise CheckpointError(
                f"checkpoint {self.dir.last} belongs to run {resume.get('run_id')}, not to "
                f"{run_id(self.identity)}. {remedy}"
            )
        self.dir.failed.unlink(missing_ok=True)  # a restart after a failure
        if resume is None:
            self.instance = uuid.uuid4().hex  # tells this training of the run from an earlier one deleted since
            self.dir.write_text("config.yaml", self.cfg.to_yaml())
            self.dir.write_json(
                "identity.json",
                {"run_id": run_id(self.identity), **self.identity, "code": code_version(), "instance": self.instance},
            )
            self.dir.truncate_history(0)
            self.state = RunState()
        else:
            self.instance = self.dir.instance()
            self.state = RunState.resuming(resume)
            self.state.history_lines = self.dir.truncate_history(self.state.history_lines)
        return resume

    def _build(self, resume: dict | None) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        self.data = load_run_data(cfg)
        encoder, tokenizer = load_backbone(cfg.backbone, seed=cfg.seed)
        self.model = MultitaskModel(ModelConfig.of(cfg), encoder, tokenizer, init_seed=cfg.seed).to(self.device)
        if cfg.dropout_rng == "keyed":  # its masks go through F.dropout (mtlib.model.keyed_dropout)
            encoder.set_attn_implementation("eager")
        prepare_model(self.model, self.device, cfg.compile)  # TF32 on CUDA; torch.compile when asked
        if self.pack is not None:
            self.pack.attach(self.model)
        if cfg.init_checkpoint and resume is None:
            self._load_init(cfg.init_checkpoint)
        self.streams = {
            t: BatchStream(self.data["train"][t], cfg.batch_size[t], seed=cfg.seed + i, batching=cfg.batching)
            for i, t in enumerate(cfg.tasks)
        }
        if resume is None:
            self.log(
                StartRow(
                    run_id=run_id(self.identity),
                    config_hash=cfg.settings_hash(),
                    device=str(self.device),
                    precision=self.precision,
                    params=self.model.parameter_counts(),
                    data=self.data["provenance"],
                )
            )
            fault_point("start")

    def _load_init(self, path: str) -> None:
        """Start from another run's best.pt (or a last.pt); only PAL weights may be missing (they start neutral)."""
        if not Path(path).exists():
            raise FileNotFoundError(f"config: key 'init_checkpoint' points to a missing file: {path}")
        state = model_state(path, self.device, remedy="Check the key 'init_checkpoint'.")
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        bad = [k for k in missing if ".pals." not in f".{k}"] + list(unexpected)
        if bad:
            raise ValueError(f"{path} does not fit this model: {len(bad)} mismatched keys, e.g. {bad[:3]}")

    # ------------------------------------------------------------------ bookkeeping
    def log(self, record: HistoryRow, notify: bool = True) -> dict:
        record.wall = round(self.state.wall(), 3)
        return self.append(record.to_json(), notify)

    def append(self, row: dict, notify: bool = True) -> dict:
        """One history row written and counted (and reported to the callback)."""
        self.dir.append_history(row)
        self.state.history_lines += 1
        if notify and self.callback:
            self.callback(row)
        return row

    # ------------------------------------------------------------------ one phase
    def _run_phase(self, pi: int, pcfg: RunConfig, resume: dict | None) -> None:
        cfg, model = self.cfg, self.model
        names = cfg.phase_names()
        sizes = {t: len(self.data["train"][t]) for t in cfg.tasks}
        phase = build_phase(
            pi, names[pi], pcfg, pi == len(names) - 1, model, self.streams, sizes, self.device, self.precision, cfg.seed
        )
        attach(phase, model, cfg.seed)  # N processes: sharded batches, gradients summed over ranks
        self.best_sub_predictions = None  # the phase's best epoch's dev-subsample predictions (final evaluation)
        if resume is not None:
            phase.load_state_dict(resume["phase"])
            load_training_state(resume, model, self.streams, self.device, self.dir.last)
        self.state.enter(phase)
        for epoch in range(phase.progress.epoch + 1, pcfg.epochs + 1):
            if phase.progress.bad_epochs >= pcfg.patience:
                break
            phase.sampler.set_epoch(epoch)
            model.train()
            counts = dict.fromkeys(cfg.tasks, 0)
            running: dict[str, list[float]] = {t: [] for t in cfg.tasks}
            bar = epoch_bar(
                range(phase.updates_per_epoch), f"{cfg.name} {phase.name} epoch {epoch}/{pcfg.epochs}", cfg.progress
            )
            for step in bar:
                with self.state.speed.training(phase):
                    self._update(phase, epoch, step + 1, counts, running)
                if (step + 1) % cfg.log_every == 0 or step + 1 == phase.updates_per_epoch:
                    row = {t: float(np.mean(v)) for t, v in running.items() if v}
                    self.log(
                        TrainRow(
                            phase=pi,
                            epoch=epoch,
                            step=step + 1,
                            examples_seen=self.state.examples_seen,
                            lr=phase.scheduler.get_last_lr()[0],
                            loss=row,
                        )
                    )
                    bar.set_postfix({t: f"{v:.3f}" for t, v in row.items()})
                    running = {t: [] for t in cfg.tasks}
            bar.close()
            self._end_epoch(phase, epoch, counts)
        # hand the phase's best model to the next phase (as the original's pretrain -> finetune)
        best = self.dir.phase_best(pi, phase.last)
        model.load_state_dict(self.dir.model_state(best, self.device, remedy=self._restart_hint()))
        fault_point("handover")
        if not phase.last:
            shared_phases.share(self, pi + 1)

    def _update(self, phase: Phase, epoch: int, step: int, counts: dict, running: dict) -> None:
        phase.optimizer.zero_grad(set_to_none=True)
        try:
            with casts_kept(self.precision):  # bf16: every weight cast once per update (before the optimizer step)
                result = phase.step(epoch)
        except NumericFault as fault:
            raise fault.locate(phase=f"{phase.index} ({phase.name})", epoch=epoch, step=step) from None
        self.state.count(phase)
        for t, n in result.counts.items():
            counts[t] += n
        for t, v in result.losses.items():
            running[t].append(v)
        if result.stats is not None:
            self.log(
                GradRow(
                    epoch=epoch,
                    examples_seen=self.state.examples_seen,
                    **result.stats,
                    counts=result.counts,
                    beta=getattr(phase.step, "beta", None),
                )
            )
        phase.apply_update()
        fault_point("step")

    def _end_epoch(self, phase: Phase, epoch: int, counts: dict) -> None:
        cfg, progress = self.cfg, phase.progress
        with self.state.speed.evaluation(phase.name, sum(map(len, self.data["dev_sub"].values()))):
            scores, preds = evaluate(self.model, self.data["dev_sub"], cfg.eval_batch_size, self.device, self.precision)
        bad = [t for t, p in preds.items() if not np.isfinite(p).all()]
        if bad:
            raise NumericFault("non-finite dev predictions", bad[0]).locate(
                phase=f"{phase.index} ({phase.name})", epoch=epoch, step="eval"
            )
        mean = scores["mean"] if math.isfinite(scores["mean"]) else -math.inf  # a constant STS output: r is NaN
        improved = mean > progress.best or progress.best_epoch == 0  # each phase keeps a best model
        progress.epoch = epoch
        if improved:
            progress.best, progress.best_epoch, progress.bad_epochs = mean, epoch, 0
            self.best_sub_predictions = preds
            self.dir.save_checkpoint(self.dir.phase_best(phase.index, phase.last), {"model": self.model.state_dict()})
            fault_point("best")
        else:
            progress.bad_epochs += 1
        row = self.log(
            EvalRow(
                phase=phase.index,
                phase_name=phase.name,
                epoch=epoch,
                examples_seen=self.state.examples_seen,
                scores={k: float(v) for k, v in scores.items()},
                task_counts=counts,
                improved=improved,
                probabilities=phase.sampler.probabilities() if phase.uses_sampler_probabilities() else None,
            ),
            notify=False,
        )
        self.dir.save_checkpoint(
            self.dir.last,
            self.state.last_checkpoint(run_id(self.identity), self.model, phase, self.streams, self.device),
        )
        fault_point("epoch_end")
        if self.callback:  # reported after the checkpoint: an interruption here resumes after this epoch
            self.callback(row)
        if cfg.progress:
            print(f"[{cfg.name}] {phase.name} epoch {epoch}: " + " ".join(f"{k} {v:.4f}" for k, v in scores.items()))

    # ------------------------------------------------------------------ failures
    def _restart_hint(self) -> str:
        return f"Delete {self.dir.last} (if any) and the run's *best.pt files to start this run over."

    def _mark_failed(self, err: Exception) -> None:
        where = getattr(err, "where", {})
        good = next((p for p in (self.dir.last, self.dir.best) if p.is_file()), None)
        hint = (
            f"restart it from its last good checkpoint with a changed config, e.g. "
            f"--set init_checkpoint={good} --set lr=..."
            if good is not None
            else "it failed before its first checkpoint; start it again with a changed config, e.g. --set lr=..."
        )
        try:
            self.dir.write_json(
                "failed.json",
                {
                    "error": str(err),
                    "kind": type(err).__name__,
                    "where": where,
                    "restart": hint if isinstance(err, NumericFault) else "",
                },
            )
        except OSError:
            pass  # a full disk: the error itself still reaches the caller
        if isinstance(err, NumericFault):
            err.args = (f"{err.args[0]}; run {self.run_dir} marked failed (failed.json); {hint}",)

    # ------------------------------------------------------------------ the end
    def _finish(self) -> Path:
        cfg, model = self.cfg, self.model  # the last phase has already loaded its best.pt
        dev = self.data["dev"]  # the final rows (load_run_data: all of dev, final_dev_max of it, or the subsample)
        t = time.perf_counter()
        full, preds = evaluate(
            model,
            dev,
            cfg.eval_batch_size,
            self.device,
            self.precision,
            dev_sub=self.data["dev_sub"],
            known=self.best_sub_predictions,
        )
        eval_s = time.perf_counter() - t
        reported = reported_scores(dev, preds, self.data["report"])  # the report half (dev_split: halves)
        scores = reported if reported is not None else full
        self.dir.predictions.mkdir(exist_ok=True)
        for task, p in preds.items():
            write_predictions(self.dir.predictions / f"{task}-dev-output.csv", task, [ex.id for ex in dev[task]], p)
            test = self.data["test"][task]
            if test:
                tp = predict(model, task, test, cfg.eval_batch_size, self.device, self.precision)
                write_predictions(self.dir.predictions / f"{task}-test-output.csv", task, [ex.id for ex in test], tp)
        state = self.state
        metrics = Metrics(
            name=cfg.name,
            seed=cfg.seed,
            run_id=run_id(self.identity),
            config_hash=cfg.settings_hash(),
            backbone=cfg.backbone,
            dev={k: float(v) for k, v in scores.items()},
            dev_split=cfg.final_dev,
            dev_half="report" if reported is not None else None,
            dev_full={k: float(v) for k, v in full.items()} if reported is not None else None,
            best_epoch=state.progress.best_epoch,
            best_dev_subsample_mean=state.progress.best,
            examples_seen=state.examples_seen,
            train_seconds=round(state.wall(), 1),
            final_eval_seconds=round(eval_s, 1),
            device=str(self.device),
            precision=self.precision,
            data=self.data["provenance"],
            data_sha256=self.identity["data"],
            params=model.parameter_counts(),
            resumed=state.resumed,
            shared_phases=state.shared,
            code=code_version(),
            speed=state.speed.report(),
            precision_reason=precision_reason(cfg.precision, self.device),
        )
        self.log(FinalRow(scores=metrics.dev))
        fault_point("before_metrics")
        self.dir.write_json("metrics.json", metrics.to_json())
        fault_point("after_metrics")
        self.dir.remove_leftovers()
        if cfg.progress:
            which = f"{cfg.final_dev}, report half" if reported is not None else cfg.final_dev
            print(f"[{cfg.name}] final dev ({which}): " + " ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        return self.run_dir


def run(cfg: RunConfig, callback: Callback | None = None, pack=None) -> Path:
    """Train and evaluate one config; returns its run directory (an existing finished run is returned as is)."""
    return Trainer(cfg, with_tensorboard(cfg, callback), pack).run()
