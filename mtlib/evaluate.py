"""A run's data and its evaluation: the examples a config trains and is scored on, predictions, dev scores."""

from __future__ import annotations

import numpy as np
import torch

from mtlib import data as mdata
from mtlib.augment import AUGMENTED_CLASSES, EDAParams, augment_examples, ensure_nltk_data
from mtlib.batches import collate, eval_batches
from mtlib.config import RunConfig, resolve_path
from mtlib.metrics import score
from mtlib.model import MultitaskModel
from mtlib.runtime import autocast


# ------------------------------------------------------------------ data
def _fixed_subset(examples: list, k: int | None, seed: int) -> list:
    """``k`` examples drawn with ``seed``, in file order: the same rows for every run (all when k is unset)."""
    if not k or len(examples) <= k:
        return examples
    pick = np.random.default_rng(seed).permutation(len(examples))[:k]
    return [examples[i] for i in sorted(pick)]


def load_data(cfg: RunConfig) -> dict:
    """Train (filtered, subsampled, augmented), dev, dev subsample and test examples per task."""
    out: dict = {"train": {}, "dev": {}, "dev_sub": {}, "test": {}, "provenance": {}}
    for task in cfg.tasks:
        train = mdata.load_split(task, "train", cfg.data_dir, quora_train=cfg.quora_train)
        n_raw = len(train)
        if task == "para":  # which Quora train rows: read off the load, not by parsing the files again
            out["provenance"]["quora_train"] = train.report.source
        train = mdata.filter_by_length(train, cfg.max_chars)
        n_filtered = len(train)
        train = _fixed_subset(train, cfg.max_train_examples, seed=1234)  # the same for every seed
        n_aug = 0
        if cfg.augment and task in AUGMENTED_CLASSES:
            params = EDAParams(synonym_p=cfg.augment_synonym_p, deletion_p=cfg.augment_deletion_p)
            before = len(train)
            if cfg.data_dir:
                ensure_nltk_data(cfg.data_dir)
            train = augment_examples(task, train, params, seed=cfg.seed,
                                     cache_dir=resolve_path(cfg.out_dir).parent / "cache", progress=cfg.progress)
            n_aug = len(train) - before
        dev = mdata.load_split(task, "dev", cfg.data_dir)
        sub = _fixed_subset(dev, cfg.dev_subsample, seed=0)  # every run is compared on the same rows
        try:
            test = mdata.load_split(task, "test", cfg.data_dir) if cfg.predict_test else []
        except FileNotFoundError:
            test = []  # quora-test-student.csv is not available here
        dev = _fixed_subset(dev, cfg.final_dev_max, seed=0)
        out["train"][task], out["dev"][task], out["dev_sub"][task], out["test"][task] = train, dev, sub, test
        out["provenance"][task] = {"train_raw": n_raw, "train_filtered": n_filtered, "train_used": len(train),
                                   "augmented": n_aug, "dev": len(dev), "dev_subsample": len(sub), "test": len(test)}
    return out


# ------------------------------------------------------------------ evaluation
@torch.no_grad()
def predict(model: MultitaskModel, task: str, examples, batch_size: int, device, precision: str) -> np.ndarray:
    model.eval()
    preds = np.zeros(len(examples), dtype=np.float64)
    for idx in eval_batches(examples, batch_size):
        batch = collate([examples[i] for i in idx], model.tokenizer, model.cfg.pair_mode, device)
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
