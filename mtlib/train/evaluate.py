"""Evaluation: predictions and dev scores of a model on examples (batched by length, no autograd)."""

from __future__ import annotations

import numpy as np
import torch

from mtlib.data.batches import eval_batches
from mtlib.data.tokens import encode_batch
from mtlib.data.metrics import score
from mtlib.model.multitask import MultitaskModel
from mtlib.train.runtime import autocast


# ------------------------------------------------------------------ evaluation
@torch.inference_mode()
def predict(model: MultitaskModel, task: str, examples, batch_size: int, device, precision: str) -> np.ndarray:
    model.eval()
    preds = np.zeros(len(examples), dtype=np.float64)
    for idx in eval_batches(examples, batch_size):
        batch = encode_batch([examples[i] for i in idx], model.tokenizer, model.cfg.pair_mode, device)
        with autocast(device, precision):
            out = model(task, batch)
        preds[idx] = model.predictions(task, out).float().cpu().numpy()
    return preds


def evaluate(model: MultitaskModel, dev: dict, batch_size: int, device, precision: str) -> tuple[dict, dict]:
    """({task: score, 'mean': ...}, {task: predictions}) on the given dev examples."""
    scores, preds = {}, {}
    for task, examples in dev.items():
        p = predict(model, task, examples, batch_size, device, precision)
        gold = np.array([ex.label for ex in examples], dtype=np.float64)
        scores[task] = score(task, p, gold)
        preds[task] = p
    scores["mean"] = float(np.mean([scores[t] for t in dev]))
    return scores, preds
