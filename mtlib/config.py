"""RunConfig: every knob of a run, its defaults and its validation (frozen plain data).

Allowed values come from the module that implements each knob (``SAMPLERS`` from the samplers, ``STEP_RULES``
from SMART, ...), so a new sampler or gradient method is added in one place. A config is built and
checked at once: every bad key or value is one line of a ``ConfigError``. Turning a profile, a YAML file
and an experiments row into a RunConfig is ``mtlib.study.resolve.resolve_config``'s job; the run's
identity (what its directory is named after) is ``mtlib.train.identity``'s.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mtlib import TASKS
from mtlib import tasks as task_records
from mtlib.configchecks import PHASE_KEYS, check_ranges
from mtlib.configtypes import (
    ConfigError, Problem, check_value, describe, field_types_of, frozen, locate, located, plain,
)
from mtlib.data.bucketing import BATCHINGS
from mtlib.data.parse import QUORA_TRAIN_OPTIONS
from mtlib.model.heads import HEAD_KINDS
from mtlib.model.multitask import HEAD_TASKS, PAIR_MODES, POOLINGS
from mtlib.train.freeze import FREEZE_MODES
from mtlib.train.gradients.combiners import GRADVAC_UPDATES
from mtlib.train.gradients.methods import GRADIENT_METHODS
from mtlib.train.loss_weighting import LOSS_WEIGHTINGS, loss_weighting_conflict
from mtlib.train.gradients.compromise import COMPROMISE_COMBINES, COMPROMISE_COUNTS
from mtlib.train.runtime import PRECISIONS
from mtlib.train.samplers import PAL_COUNTS, SAMPLERS
from mtlib.train.smart import STEP_RULES

LR_SCHEDULES = ("constant", "linear")
FINAL_DEV = ("full", "subsample")
REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_DIR = REPO_ROOT / "params"


@dataclass(frozen=True)
class RunConfig:
    # --- identity
    name: str = "run"  # a plain file name: it names the run's folder
    seed: int = 11711  # the original's seed_everything(11711)
    out_dir: str = "outputs/runs"

    # --- data
    tasks: tuple[str, ...] = TASKS  # names declared in params/tasks.yaml (the course's) or in task_file
    task_file: str | None = None  # a YAML of further task declarations (mtlib.tasks; CONTRIBUTING.md "Add a task")
    data_dir: str | None = None
    quora_train: Literal[QUORA_TRAIN_OPTIONS] = "head+extra"
    max_chars: int = 250  # the original's "top 2%" filter is a fixed 250-character cut, train only
    max_train_examples: int | None = None  # per task, a fixed random subset (quick profiles)
    batching: Literal[BATCHINGS] = "length"  # length: similar lengths per batch, drawn from shuffled pools
    augment: bool = False  # EDA on SST and Quora train (mtlib.data.augment)
    augment_synonym_p: float = 0.05
    augment_deletion_p: float = 0.1

    # --- model
    backbone: str = "minilm-l6"
    pooling: Literal[POOLINGS] = "pooler"  # the original read the pooler output
    pair_mode: Literal[PAIR_MODES] = "concat_sentences"
    n_hidden_layers: int = 0
    hidden_dropout: float = 0.2
    head: Literal[HEAD_KINDS] = "mlp"
    head_size: int = 128  # RNN/LSTM hidden size
    head_cls: bool = False  # concatenate the [CLS] state to the recurrent feature
    head_tasks: Literal[HEAD_TASKS] = "all"  # which tasks get the recurrent head (others: MLP on [CLS])
    pals: bool = False
    pal_size: int = 132
    pal_heads: int = 12

    # --- optimisation
    lr: float = 1e-5
    head_lr: float | None = None  # a separate LR for the task heads (None: lr); short runs need heads to move
    lr_schedule: Literal[LR_SCHEDULES] = "constant"  # the original: constant, no warmup
    warmup_ratio: float = 0.0
    batch_size: Mapping[str, int] = field(default_factory=lambda: {"sst": 32, "para": 16, "sts": 32})
    epochs: int = 10
    batches_per_epoch: int = 300  # scheduler batches (single-task steps) per epoch
    patience: int = 3
    sampler: Literal[SAMPLERS] = "pal"  # single-task steps only; gradient methods take one batch of every task
    pal_counts: Literal[PAL_COUNTS] = "examples"  # N_t for PAL; the original used batches
    freeze: Literal[FREEZE_MODES] = "none"
    train_pals: bool = True  # False keeps PALs frozen (exactly neutral) in a phase
    init_checkpoint: str | None = None  # a best.pt (or last.pt) to start from (PAL keys may be missing)

    # --- gradient methods (one batch per task per update, combined on the shared encoder)
    gradient_method: Literal[GRADIENT_METHODS] = "none"
    gradvac_beta: float = 1e-2
    gradvac_update: Literal[GRADVAC_UPDATES] = "every"  # on_fire = the original's quirk
    cagrad_c: float = 0.4  # CAGrad's ball radius (the paper's 0.4)
    loss_weighting: Literal[LOSS_WEIGHTINGS] = "none"  # uncertainty | dwa | famo (mtlib.train.loss_weighting)
    loss_weighting_lr: float = 0.025  # the private Adam of uncertainty's log-variances and FAMO's logits
    dwa_temperature: float = 2.0
    smart_weight: float = 0.0  # lambda of the SMART regulariser; 0 = off
    # smart_pytorch: noise renormalised to unit inf-norm after each ascent step (MT-DNN and the package the
    # original used); paper: step_size * g/|g|_inf added to the noise (tiny: ~1e-6)
    smart_step_rule: Literal[STEP_RULES] = "smart_pytorch"
    compromise: bool = False  # Gradient Compromise: K pal_control batches per update, n_t^beta weights
    compromise_k: int = 16
    compromise_combine: Literal[COMPROMISE_COMBINES] = "encourage"
    compromise_counts: Literal[COMPROMISE_COUNTS] = "update"  # cumulative = the original's bug
    compromise_divide: bool = True  # False: the groups' losses summed without the n_t^beta divisors (an ablation)

    # --- phases: a list of overrides of the fields above, run one after the other
    # (e.g. individual pretraining of the heads with the encoder frozen, then fine-tuning).
    phases: tuple[Mapping[str, Any], ...] = ()

    # --- evaluation and running
    dev_subsample: int | None = None  # per task, a fixed subsample for per-epoch evaluation
    final_dev: Literal[FINAL_DEV] = "full"
    final_dev_max: int | None = None  # per task, cap the final dev set (a fixed subsample; quick profiles)
    eval_batch_size: int = 128
    predict_test: bool = True
    precision: Literal[PRECISIONS] = "auto"  # auto: the fastest precision this machine trains correctly in
    compile: bool = False  # torch.compile the encoder (same results up to rounding; pays on GPUs, not on a 2-core CPU)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    threads: int | None = None
    progress: bool = True
    log_every: int = 25  # updates between training-loss lines in history.jsonl
    tensorboard: bool = False  # TensorBoard event files beside history.jsonl (mtlib.train.tensorboard_events)

    def __post_init__(self) -> None:
        errors = []
        for f in dataclasses.fields(self):
            ok, value, error = check_value(field_types()[f.name], f.name, getattr(self, f.name))
            if not ok:
                errors.append(Problem(f"config: {error}", f.name))
            else:
                object.__setattr__(self, f.name, frozen(value))
        if not errors and self.task_file:
            try:
                task_records.register(task_records.resolve(self.task_file))
            except task_records.TaskError as err:
                errors.append(Problem(f"config: key 'task_file': {err}", "task_file"))
        if not errors:
            errors = check_ranges(self)
            if expected := loss_weighting_conflict(self.loss_weighting, self.gradient_method, self.compromise):
                errors.append(Problem(f"config: key 'loss_weighting' has value {self.loss_weighting!r}; expected "
                                      f"{expected}", "loss_weighting"))
        if errors:
            raise ConfigError(errors)

    # ---- construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config",
                  locations: Mapping[str, str] | None = None) -> "RunConfig":
        """Build and check a config; an error names where its key was set ({key path: place}), else ``source``."""
        if not isinstance(data, Mapping):
            raise ConfigError([f"{source}: expected a mapping of config keys, got {type(data).__name__}"])
        check_keys(data, source, locations)
        try:
            return cls(**data)
        except ConfigError as e:
            lines = [located(x, locate(getattr(x, "key", None), source, locations)) for x in e.errors]
            raise ConfigError(lines) from None

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "RunConfig":
        """A plain run-config YAML file (profiles with ``extends``/``seeds`` too) through the one resolver."""
        from mtlib.study.resolve import resolve_config  # the resolver sits above; this is a convenience

        return resolve_config(path, **overrides)

    def replace(self, **changes: Any) -> "RunConfig":
        check_keys(changes, "replace()")
        return RunConfig.from_dict({**self.to_dict(), **changes}, source="replace()")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # ---- phases and what changes results
    def phase_configs(self) -> list["RunConfig"]:
        """The run as a list of phases: each phase is this config with its overrides applied."""
        if not self.phases:
            return [self]
        base = {k: v for k, v in self.to_dict().items() if k != "phases"}
        return [RunConfig.from_dict({**base, **{k: v for k, v in plain(ph).items() if k != "name"}},
                                    source=f"phases[{i}] ({ph.get('name', f'phase{i}')})")
                for i, ph in enumerate(self.phases)]

    def phase_names(self) -> list[str]:
        return [ph.get("name", f"phase{i}") for i, ph in enumerate(self.phases)] or ["train"]

    def settings(self) -> dict[str, Any]:
        """Every setting that changes results, phase by phase, with settings a phase ignores left out (the
        sampler of a gradient-method phase, GradVac's beta under PCGrad, ...). Paths, the seed (it names its
        own folder), the data folder (its files' checksums count instead, see ``mtlib.train.identity``),
        progress output and the raw device/precision strings (the resolved ones count) are not settings."""
        run = {k: v for k, v in self.to_dict().items() if k not in PHASE_KEYS and k not in NON_RESULT_KEYS}
        if run.get("init_checkpoint"):  # the parent run, not where the outputs folder happens to be
            run["init_checkpoint"] = "/".join(Path(run["init_checkpoint"]).parts[-3:])
        for key, needs in MODEL_KEY_NEEDS.items():
            if not needs(self):
                run.pop(key, None)
        return {**run, "phases": [_phase_settings(p) for p in self.phase_configs()]}

    def settings_hash(self) -> str:
        """Short id of ``settings()``: the same for every seed, device and data folder of one configuration."""
        return hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:10]

    def __hash__(self) -> int:
        return hash(self.settings_hash())


NON_RESULT_KEYS = frozenset({"name", "seed", "out_dir", "data_dir", "progress", "threads", "log_every", "device",
                             "precision", "compile", "tensorboard",
                             "task_file"})  # its tasks' declarations count instead (mtlib.train.identity)
MODEL_KEY_NEEDS = {  # model and data keys that matter only with another setting
    "head_size": lambda c: c.head != "mlp", "head_cls": lambda c: c.head != "mlp",
    "head_tasks": lambda c: c.head != "mlp", "pal_size": lambda c: c.pals, "pal_heads": lambda c: c.pals,
    "augment_synonym_p": lambda c: c.augment, "augment_deletion_p": lambda c: c.augment,
    "final_dev_max": lambda c: c.final_dev == "full",
}


def _phase_settings(p: RunConfig) -> dict[str, Any]:
    out = {k: plain(getattr(p, k)) for k in sorted(PHASE_KEYS)}
    out["head_lr"] = p.head_lr if p.head_lr is not None else p.lr
    combined = p.gradient_method != "none"
    if combined:
        out.pop("sampler")  # every update takes a batch of every task (or a compromise group)
    if not (p.compromise or p.sampler in ("pal", "pal_control") and not combined):
        out.pop("pal_counts")
    if p.gradient_method != "gradvac":
        out.pop("gradvac_beta"), out.pop("gradvac_update")
    if p.gradient_method != "cagrad":
        out.pop("cagrad_c")
    if p.loss_weighting not in ("uncertainty", "famo"):
        out.pop("loss_weighting_lr")
    if p.loss_weighting != "dwa":
        out.pop("dwa_temperature")
    if p.loss_weighting == "none":  # runs from before loss weighting keep their identity
        out.pop("loss_weighting")
    if p.compromise_divide or not p.compromise:
        out.pop("compromise_divide")
    if not p.compromise:
        for k in ("compromise_k", "compromise_combine", "compromise_counts"):
            out.pop(k)
    if p.smart_weight == 0:
        out.pop("smart_step_rule")
    if not p.pals:
        out.pop("train_pals")
    out["batch_size"] = {t: out["batch_size"][t] for t in p.tasks}
    return out


@functools.cache
def field_types() -> dict[str, Any]:
    """{field name: type} of RunConfig; cached and shared, so callers must not mutate it."""
    return field_types_of(RunConfig)


def allowed_values(key: str) -> str:
    return describe(field_types()[key])


def check_keys(data: Mapping[str, Any], source: str, locations: Mapping[str, str] | None = None) -> None:
    unknown = [k for k in data if k not in field_types()]
    if unknown:
        raise ConfigError([Problem(f"{locate(k, source, locations)}: unknown config key {k!r}; allowed keys: "
                                   f"{', '.join(sorted(field_types()))}", k) for k in unknown])


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is read as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError([f"--set expects key=value, got {text!r}"])
    key, raw = text.split("=", 1)
    key = key.strip()
    check_keys({key: None}, "--set")
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError([f"--set {key}: value {raw!r} is not valid YAML ({str(e).splitlines()[0]})"]) from None


def resolve_path(path: str | Path) -> Path:
    """Relative paths are relative to the repository root (not the working directory)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path
