"""A run's data: the examples a config trains on (filtered, subsampled, augmented) and is scored on."""

from __future__ import annotations

import numpy as np

from mtlib import tasks as task_records
from mtlib.config.run_config import RunConfig, resolve_path
from mtlib.data import parse
from mtlib.data.augment import EDAParams, augment_examples, augmented_classes, ensure_nltk_data


def fixed_subset(examples: list, k: int | None, seed: int) -> list:
    """``k`` examples drawn with ``seed``, in file order: the same rows for every run (all when k is unset)."""
    if not k or len(examples) <= k:
        return examples
    pick = np.random.default_rng(seed).permutation(len(examples))[:k]
    return [examples[i] for i in sorted(pick)]


def load_run_data(cfg: RunConfig) -> dict:
    """Train (filtered, subsampled, augmented), dev, dev subsample and test examples per task, and their
    provenance (what was read, kept and skipped)."""
    out: dict = {"train": {}, "dev": {}, "dev_sub": {}, "test": {}, "provenance": {}}
    for task in cfg.tasks:
        train = parse.load_split(task, "train", cfg.data_dir, quora_train=cfg.quora_train)
        n_raw, files = len(train), ", ".join(train.report.files)
        if task_records.get(task).train_subsets:  # which Quora train rows: read off the load, not parsed again
            out["provenance"]["quora_train"] = train.report.source
        train = parse.filter_by_length(train, cfg.max_chars)
        n_filtered = len(train)
        if not train:
            raise ValueError(
                f"task {task}: no usable training example in {files} ({n_raw} parsed, none within "
                f"max_chars={cfg.max_chars}); check the file or the key 'max_chars'"
            )
        train = fixed_subset(train, cfg.max_train_examples, seed=1234)  # the same for every seed
        n_aug = 0
        if cfg.augment and augmented_classes(task) is not False:
            params = EDAParams(synonym_p=cfg.augment_synonym_p, deletion_p=cfg.augment_deletion_p)
            before = len(train)
            if cfg.data_dir:
                ensure_nltk_data(cfg.data_dir)
            train = augment_examples(
                task,
                train,
                params,
                seed=cfg.seed,
                cache_dir=resolve_path(cfg.out_dir).parent / "cache",
                progress=cfg.progress,
            )
            n_aug = len(train) - before
        dev = parse.load_split(task, "dev", cfg.data_dir)
        if not dev:
            raise ValueError(f"task {task}: no usable dev example in {', '.join(dev.report.files)}")
        sub = fixed_subset(dev, cfg.dev_subsample, seed=0)  # every run is compared on the same rows
        test = parse.load_split(task, "test", cfg.data_dir) if cfg.predict_test and test_available(cfg, task) else []
        dev = fixed_subset(dev, cfg.final_dev_max, seed=0)
        out["train"][task], out["dev"][task], out["dev_sub"][task], out["test"][task] = train, dev, sub, test
        out["provenance"][task] = {
            "train_raw": n_raw,
            "train_filtered": n_filtered,
            "train_used": len(train),
            "augmented": n_aug,
            "dev": len(dev),
            "dev_subsample": len(sub),
            "test": len(test),
        }
    out["provenance"]["max_chars"] = cfg.max_chars
    return out


def test_available(cfg: RunConfig, task: str) -> bool:
    return parse.split_available(task, "test", cfg.data_dir)  # quora-test-student.csv is not in the shared data


def files_read(cfg: RunConfig) -> list:
    """Every data file ``load_run_data(cfg)`` reads."""
    out = []
    for task in cfg.tasks:
        out += parse.split_files(task, "train", cfg.data_dir, cfg.quora_train)
        out += parse.split_files(task, "dev", cfg.data_dir)
        if cfg.predict_test and test_available(cfg, task):
            out += parse.split_files(task, "test", cfg.data_dir)
    return out
