"""Evaluation: predictions and dev scores of a model on examples (batched by length, no autograd)."""

from __future__ import annotations

import numpy as np
import torch

from mtlib.data.batches import eval_batches
from mtlib.data.tokens import encode_batch
from mtlib.data.metrics import score
from mtlib.model.multitask import MultitaskModel
from mtlib.machine.runtime import autocast


# ------------------------------------------------------------------ evaluation
@torch.inference_mode()
def predict(model: MultitaskModel, task: str, examples, batch_size: int, device, precision: str) -> np.ndarray:
    model.eval()
    preds = np.zeros(len(examples), dtype=np.float64)
    for idx in eval_batches(examples, batch_size):
        batch = encode_batch([examples[i] for i in idx], model.tokenizer, model.cfg.pair_mode, device)
        if model.pack is not None:  # evaluated beside other runs (mtlib.runs.pack)
            out = model.pack.forward(model, task, batch, precision)
        else:
            with autocast(device, precision):
                out = model(task, batch)
        preds[idx] = model.predictions(task, out).float().cpu().numpy()
    return preds


def evaluate(
    model: MultitaskModel,
    dev: dict,
    batch_size: int,
    device,
    precision: str,
    dev_sub: dict | None = None,
    known: dict | None = None,
) -> tuple[dict, dict]:
    """({task: score, 'mean': ...}, {task: predictions}) on the given dev examples.

    With ``dev_sub`` (the final evaluation), each task's dev examples are predicted in two groups: those of the
    dev subsample, batched as every epoch's evaluation batches them, then the rest. That part is then what the
    best epoch's evaluation already predicted with the same weights in the same batches, bit for bit, and
    ``known`` ({task: the best epoch's predictions of ``dev_sub[task]``}) is used instead of predicting it
    again (without it, it is predicted: the same values)."""
    scores, preds = {}, {}
    for task, examples in dev.items():
        if dev_sub is None:
            preds[task] = predict(model, task, examples, batch_size, device, precision)
        else:
            preds[task] = _final_predictions(
                model, task, examples, dev_sub.get(task, []), batch_size, device, precision, (known or {}).get(task)
            )
        gold = np.array([ex.label for ex in examples], dtype=np.float64)
        scores[task] = score(task, preds[task], gold)
    scores["mean"] = float(np.mean([scores[t] for t in dev]))
    return scores, preds


def _final_predictions(model, task, examples, sub, batch_size, device, precision, known) -> np.ndarray:
    position = {ex.id: i for i, ex in enumerate(examples)}
    sub_at = [position.get(ex.id) for ex in sub]
    if not sub or len(position) < len(examples) or None in sub_at or len(set(sub_at)) < len(sub):
        # repeated ids, or a subsample that is not part of dev: one group
        return predict(model, task, examples, batch_size, device, precision)
    in_sub = set(sub_at)
    rest = [i for i in range(len(examples)) if i not in in_sub]
    out = np.zeros(len(examples), dtype=np.float64)
    out[sub_at] = known if known is not None else predict(model, task, sub, batch_size, device, precision)
    if rest:
        out[rest] = predict(model, task, [examples[i] for i in rest], batch_size, device, precision)
    return out


def reported_scores(dev: dict, preds: dict, report: dict) -> dict | None:
    """The scores of the report half (``report[task]``: its ids; ``mtlib.data.dev_halves``) from the final
    evaluation's predictions of ``dev``; None when every task reports all of dev."""
    if all(report.get(task) is None for task in dev):
        return None
    scores = {}
    for task, examples in dev.items():
        keep = np.array([report[task] is None or ex.id in report[task] for ex in examples], dtype=bool)
        gold = np.array([ex.label for ex in examples], dtype=np.float64)
        scores[task] = score(task, preds[task][keep], gold[keep])
    scores["mean"] = float(np.mean([scores[t] for t in dev]))
    return scores
