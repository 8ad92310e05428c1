"""The ranges and combinations a RunConfig is checked against when it is built: one line per problem."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from mtlib import tasks as task_records
from mtlib.configtypes import ConfigError, Problem, plain

# Keys a phase may override: training settings, not the model's shape or the data.
PHASE_KEYS = frozenset({
    "lr", "head_lr", "lr_schedule", "warmup_ratio", "batch_size", "epochs", "batches_per_epoch", "patience",
    "sampler", "pal_counts", "freeze", "gradient_method", "gradvac_beta", "gradvac_update",
    "smart_weight", "smart_step_rule", "compromise", "compromise_k", "compromise_combine", "compromise_counts",
    "hidden_dropout", "train_pals", "cagrad_c", "loss_weighting", "loss_weighting_lr", "dwa_temperature",
    "compromise_divide",
})
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]{0,99}")  # at most 100 characters
NAME_RULE = "a plain file name (letters, digits, _ . + = -; no '/', not starting with '.'; at most 100 characters)"
DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
RANGES = (  # (keys, the test each value passes, what is expected); null passes only where a test allows it
    (("max_chars", "epochs", "batches_per_epoch", "patience", "eval_batch_size", "compromise_k", "log_every",
      "pal_size", "pal_heads", "head_size"), lambda v: v >= 1, "an integer >= 1"),
    (("max_train_examples", "dev_subsample", "final_dev_max", "threads"), lambda v: v is None or v >= 1,
     "an integer >= 1, or null"),
    (("lr",), lambda v: v > 0, "a number > 0"),
    (("head_lr",), lambda v: v is None or v > 0, "a number > 0, or null (the same as lr)"),
    (("warmup_ratio", "augment_synonym_p", "augment_deletion_p", "gradvac_beta"), lambda v: 0 <= v <= 1,
     "a number in [0, 1]"),
    (("hidden_dropout",), lambda v: 0 <= v < 1, "a number in [0, 1)"),
    (("n_hidden_layers",), lambda v: 0 <= v <= 16, "an integer in 0..16"),
    (("smart_weight",), lambda v: v >= 0, "a number >= 0 (0 = off)"),
    (("loss_weighting_lr", "dwa_temperature"), lambda v: v > 0, "a number > 0"),
    (("cagrad_c",), lambda v: v >= 0, "a number >= 0"),
    (("seed",), lambda v: 0 <= v < 2**32, "an integer in 0..2**32-1"),
    (("name",), NAME_RE.fullmatch, NAME_RULE),
    (("device",), DEVICE_RE.fullmatch, "auto, cpu, cuda, cuda:N or mps"),
    (("backbone", "out_dir"), lambda v: bool(v.strip()), "a non-empty string"),  # '' is never meant
    (("data_dir", "init_checkpoint"), lambda v: v is None or bool(v.strip()), "a non-empty path, or null"),
)


def check_ranges(cfg) -> list[str]:
    """Every numeric range and every combination that cannot work, one line each, naming the key."""
    errors = []

    def bad(key: str, expected: str) -> None:
        errors.append(Problem(f"config: key {key!r} has value {plain(getattr(cfg, key))!r}; expected {expected}", key))

    for keys, ok, expected in RANGES:
        for key in keys:
            if not ok(getattr(cfg, key)):
                bad(key, expected)
    declared = task_records.available(cfg.task_file)  # registered (and checked) by RunConfig before this
    unknown = [t for t in cfg.tasks if t not in declared]
    if unknown or not cfg.tasks or len(set(cfg.tasks)) < len(cfg.tasks):
        bad("tasks", f"distinct tasks among {', '.join(declared)} (declare others in a task_file)")
    problems = [f"{t!r} is missing" for t in cfg.tasks if t in declared and t not in cfg.batch_size]
    problems += [f"{t!r} is not a task" for t in cfg.batch_size if t not in declared]
    problems += [f"{t!r} is {v}" for t, v in cfg.batch_size.items() if t in declared and v < 1]
    if cfg.head != "mlp" and cfg.head_tasks not in ("all", *cfg.tasks):
        bad("head_tasks", f"'all' or one of the run's tasks ({', '.join(cfg.tasks)})")
    if problems:
        bad("batch_size", f"an integer >= 1 for each task of {list(cfg.tasks)} ({'; '.join(problems)})")
    if cfg.head != "mlp" and cfg.pair_mode == "concat_embed":
        bad("head", "mlp with pair_mode 'concat_embed' (rnn/lstm read token states: use 'concat_sentences')")
    if cfg.pals and cfg.pal_size % max(cfg.pal_heads, 1):
        bad("pal_size", f"a multiple of pal_heads ({cfg.pal_heads})")
    if cfg.freeze == "all_but_pals" and not cfg.pals:
        bad("freeze", "'none' or 'encoder' when pals is false ('all_but_pals' needs pals: true)")
    if cfg.compromise and cfg.gradient_method == "none":
        bad("compromise", "false when gradient_method is 'none' (compromise needs sum, pcgrad or gradvac)")
    if cfg.compromise and cfg.compromise_k < len(cfg.tasks):
        bad("compromise_k", f">= the number of tasks ({len(cfg.tasks)})")
    for i, ph in enumerate(cfg.phases):
        errors += _check_phase(cfg, i, ph)
    return errors


def _check_phase(cfg, i: int, ph: Mapping[str, Any]) -> list[str]:
    unknown = [k for k in ph if k not in PHASE_KEYS and k != "name"]
    if unknown:
        return [Problem(f"config: phases[{i}] has key {k!r}, which a phase cannot change; allowed: "
                        f"{', '.join(sorted(PHASE_KEYS | {'name'}))}", f"phases[{i}].{k}") for k in unknown]
    if not (isinstance(name := ph.get("name", f"phase{i}"), str) and NAME_RE.fullmatch(name)):
        return [Problem(f"config: phases[{i}] has name {plain(name)!r}; expected {NAME_RULE}", f"phases[{i}].name")]
    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "phases"}
    try:
        type(cfg)(**{**base, **{k: v for k, v in ph.items() if k != "name"}})  # the phase as a whole config
    except ConfigError as e:
        return [Problem(line.replace("config:", f"config: phases[{i}] ({name}):", 1),
                        f"phases[{i}].{line.key}" if getattr(line, "key", None) in ph else f"phases[{i}]")
                for line in e.errors]
    return []
