"""The ranges and combinations a RunConfig is checked against when it is built: one line per problem.

Each field names its range (one of those below) in its own ``setting(...)``; the combinations of several
settings that cannot work are checked here, in ``check_ranges``."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from mtlib import tasks as task_records
from mtlib.config.types import ConfigError, Problem, plain
from mtlib.config.settings import Range, settings_of

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]{0,99}")  # at most 100 characters
NAME_RULE = "a plain file name (letters, digits, _ . + = -; no '/', not starting with '.'; at most 100 characters)"
DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
# The ranges RunConfig's fields name (mtlib.config.settings.setting); null passes only where a test allows it.
AT_LEAST_1 = Range(lambda v: v >= 1, "an integer >= 1", low=1)
AT_LEAST_1_OR_NULL = Range(lambda v: v is None or v >= 1, "an integer >= 1, or null", low=1)
POSITIVE = Range(lambda v: v > 0, "a number > 0", low=0)
POSITIVE_OR_NULL = Range(lambda v: v is None or v > 0, "a number > 0, or null (the same as lr)", low=0)
UNIT = Range(lambda v: 0 <= v <= 1, "a number in [0, 1]", low=0, high=1)
DROPOUT = Range(lambda v: 0 <= v < 1, "a number in [0, 1)", low=0, high=1)
HIDDEN_LAYERS = Range(lambda v: 0 <= v <= 16, "an integer in 0..16", low=0, high=16)
ZERO_IS_OFF = Range(lambda v: v >= 0, "a number >= 0 (0 = off)", low=0)
NON_NEGATIVE = Range(lambda v: v >= 0, "a number >= 0", low=0)
SEED = Range(lambda v: 0 <= v < 2**32, "an integer in 0..2**32-1", low=0, high=2**32 - 1)
NAME = Range(NAME_RE.fullmatch, NAME_RULE)
DEVICE = Range(DEVICE_RE.fullmatch, "auto, cpu, cuda, cuda:N or mps")
NON_EMPTY = Range(lambda v: bool(v.strip()), "a non-empty string")  # '' is never meant
NON_EMPTY_PATH = Range(lambda v: v is None or bool(v.strip()), "a non-empty path, or null")


def phase_keys(cls: type) -> frozenset[str]:
    """The keys a phase may override: the settings declared with ``phase=True``."""
    return frozenset(k for k, spec in settings_of(cls).items() if spec.phase)


def check_ranges(cfg) -> list[str]:
    """Every numeric range and every combination that cannot work, one line each, naming the key."""
    errors = []

    def bad(key: str, expected: str) -> None:
        errors.append(Problem(f"config: key {key!r} has value {plain(getattr(cfg, key))!r}; expected {expected}", key))

    for key, spec in settings_of(type(cfg)).items():  # each field's own range (mtlib.config.settings)
        if spec.range is not None and not spec.range(getattr(cfg, key)):
            bad(key, spec.range.text)
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
    allowed = phase_keys(type(cfg))
    unknown = [k for k in ph if k not in allowed and k != "name"]
    if unknown:
        return [
            Problem(
                f"config: phases[{i}] has key {k!r}, which a phase cannot change; allowed: "
                f"{', '.join(sorted(allowed | {'name'}))}",
                f"phases[{i}].{k}",
            )
            for k in unknown
        ]
    if not (isinstance(name := ph.get("name", f"phase{i}"), str) and NAME_RE.fullmatch(name)):
        return [Problem(f"config: phases[{i}] has name {plain(name)!r}; expected {NAME_RULE}", f"phases[{i}].name")]
    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "phases"}
    try:
        type(cfg)(**{**base, **{k: v for k, v in ph.items() if k != "name"}})  # the phase as a whole config
    except ConfigError as e:
        return [
            Problem(
                line.replace("config:", f"config: phases[{i}] ({name}):", 1),
                f"phases[{i}].{line.key}" if getattr(line, "key", None) in ph else f"phases[{i}]",
            )
            for line in e.errors
        ]
    return []
