"""A run's data: the examples a config trains on (filtered, subsampled, augmented) and is scored on."""

from __future__ import annotations

import numpy as np

from mtlib import tasks as task_records
from mtlib.config.run_config import RunConfig, resolve_path
from mtlib.data import parse
from mtlib.data import dev_halves
from mtlib.data.augment import EDAParams, augment_examples, augmented_classes, ensure_nltk_data


def fixed_subset(examples: list, k: int | None, seed: int) -> list:
    """``k`` examples drawn with ``seed``, in file order: the same rows for every run (all when k is unset)."""
    if not k or len(examples) <= k:
        return examples
    pick = np.random.default_rng(seed).permutation(len(examples))[:k]
    return [examples[i] for i in sorted(pick)]


def load_run_data(cfg: RunConfig) -> dict:
    """Train (filtered, subsampled, augmented), dev (the final evaluation's), dev subsample (every epoch's),
    the report half's ids of dev (``dev_split: halves``; None: all of dev is reported) and test examples per
    task, and their provenance (what was read, kept and skipped)."""
    out: dict = {"train": {}, "dev": {}, "dev_sub": {}, "report": {}, "test": {}, "provenance": {}}
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
        dev, sub, out["report"][task], halves = dev_parts(cfg, task, dev)
        test = parse.load_split(task, "test", cfg.data_dir) if cfg.predict_test and test_available(cfg, task) else []
        out["train"][task], out["dev"][task], out["dev_sub"][task], out["test"][task] = train, dev, sub, test
        out["provenance"][task] = {
            "train_raw": n_raw,
            "train_filtered": n_filtered,
            "train_used": len(train),
            "augmented": n_aug,
            "dev": len(dev),
            "dev_subsample": len(sub),
            **halves,
            "test": len(test),
        }
    out["provenance"]["max_chars"] = cfg.max_chars
    return out


def dev_parts(cfg: RunConfig, task: str, dev: list) -> tuple[list, list, set | None, dict]:
    """(final, subsample, report ids, provenance) of one task's dev examples: the rows the final evaluation
    scores, the fixed subsample every epoch scores, and which of the final rows are reported (None: all; see
    ``mtlib.data.dev_halves``). The trainer and ``predict`` both take them from here."""
    if cfg.dev_split != "halves":
        sub = fixed_subset(dev, cfg.dev_subsample, seed=0)  # every run is compared on the same rows
        final = fixed_subset(dev, cfg.final_dev_max, seed=0) if cfg.final_dev == "full" else sub
        return final, sub, None, {}
    selection, report = dev_halves.split_halves(task, list(dev))
    sub = fixed_subset(selection, cfg.dev_subsample, seed=0)  # chosen on the selection half only
    if cfg.final_dev == "full":
        final = fixed_subset(dev, cfg.final_dev_max, seed=0)
    else:  # the subsample's final evaluation: as many rows of the report half beside it
        kept = {ex.id for ex in sub} | {ex.id for ex in fixed_subset(report, cfg.dev_subsample, seed=0)}
        final = [ex for ex in dev if ex.id in kept]
    provenance = {
        "dev_selection": len(selection),
        "dev_report": len(report),
        "report_sha256": dev_halves.digest(report),
    }
    return final, sub, {ex.id for ex in report}, provenance


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
