"""RunConfig: every knob of a run, each described once (frozen plain data).

Each field is a ``setting(...)`` (mtlib.config.settings): default, help, range, when it is used, whether it is part
of the run id; the checks, ``settings()``, the CLI's ``--set`` help and the panel read them. Allowed values
come from the module that implements each knob (``SAMPLERS`` from the samplers, ...), so a new sampler or
gradient method is added in one place. A config is built and checked at once: every bad key or value is one
line of a ``ConfigError``. Profiles, YAML files and experiments rows become a RunConfig in
``mtlib.experiments.resolve``; the run's identity (what its directory is named after) is ``mtlib.train.identity``'s.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from mtlib import TASKS
from mtlib import tasks as task_records
from mtlib.config.checks import (
    AT_LEAST_1,
    AT_LEAST_1_OR_NULL,
    DEVICE,
    DROPOUT,
    HIDDEN_LAYERS,
    NAME,
    NON_EMPTY,
    NON_EMPTY_PATH,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_OR_NULL,
    SEED,
    UNIT,
    ZERO_IS_OFF,
    check_ranges,
    phase_keys,
)
from mtlib.config.types import (
    ConfigError,
    Problem,
    check_value,
    describe,
    field_types_of,
    frozen,
    locate,
    located,
    plain,
)
from mtlib.data import dev_halves
from mtlib.data.bucketing import BATCHINGS
from mtlib.data.parse import QUORA_TRAIN_OPTIONS
from mtlib.model.heads import HEAD_KINDS
from mtlib.model.multitask import HEAD_TASKS, PAIR_MODES, POOLINGS
from mtlib.config.settings import Setting, result_settings, setting, settings_help as settings_help_of, settings_of
from mtlib.model.freeze import FREEZE_MODES
from mtlib.methods.gradients.combiners import GRADVAC_UPDATES
from mtlib.methods.gradients.methods import GRADIENT_METHODS
from mtlib.methods.loss_weighting import LOSS_WEIGHTINGS, loss_weighting_conflict
from mtlib.methods.gradients.compromise import COMPROMISE_COMBINES, COMPROMISE_COUNTS
from mtlib.machine.runtime import PRECISIONS
from mtlib.methods.samplers import PAL_COUNTS, SAMPLERS
from mtlib.methods.smart import STEP_RULES

LR_SCHEDULES = ("constant", "linear")
FINAL_DEV = ("full", "subsample")
DEV_SPLITS = ("halves", "none")
DROPOUT_RNGS = ("torch", "keyed")  # mtlib.model.keyed_dropout
REPO_ROOT = Path(__file__).resolve().parents[2]
PARAMS_DIR = REPO_ROOT / "params"


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run; ``used_when`` predicates see the config (the phase's, for phase keys)."""

    # --- identity: what the run is called and where it goes (the seed names its own folder)
    name: str = setting("run", "a plain file name: it names the run's folder", NAME, result=False)
    seed: int = setting(11711, "the random seed (the original's seed_everything(11711))", SEED, result=False)
    out_dir: str = setting(
        "outputs/runs", "where run folders go (relative: to the repository root)", NON_EMPTY, result=False
    )

    # --- data
    tasks: tuple[str, ...] = setting(TASKS, "the tasks: names declared in params/tasks.yaml or in task_file")
    task_file: str | None = setting(  # its tasks' declarations count in the run id instead (mtlib.train.identity)
        None, "a YAML of further task declarations (mtlib.tasks)", result=False
    )
    data_dir: str | None = setting(  # its files' checksums count in the run id instead
        None, "the course data folder (null: $MTLIB_DATA_DIR, else ./data)", NON_EMPTY_PATH, result=False
    )
    quora_train: Literal[QUORA_TRAIN_OPTIONS] = setting("head+extra", "which Quora train rows a run reads")
    max_chars: int = setting(  # the original's "top 2%" filter is a fixed 250-character cut, train only
        250, "train examples longer than this many characters are dropped", AT_LEAST_1
    )
    max_train_examples: int | None = setting(
        None, "per task, a fixed random subset of train (quick profiles); null: all", AT_LEAST_1_OR_NULL
    )
    batching: Literal[BATCHINGS] = setting("length", "length: similar lengths per batch, from shuffled pools")
    augment: bool = setting(False, "EDA on SST and Quora train (mtlib.data.augment)", label="EDA augmentation")
    augment_synonym_p: float = setting(
        0.05, "EDA: the share of words replaced by a synonym", UNIT, used_when=lambda c: c.augment
    )
    augment_deletion_p: float = setting(0.1, "EDA: the share of words deleted", UNIT, used_when=lambda c: c.augment)

    # --- model
    backbone: str = setting("minilm-l6", "the encoder: a known name, a Hugging Face id or a folder", NON_EMPTY)
    pooling: Literal[POOLINGS] = setting("pooler", "the sentence vector (the original read the pooler output)")
    pair_mode: Literal[PAIR_MODES] = setting(
        "concat_sentences", "how a sentence pair is encoded", label="pair encoding"
    )
    n_hidden_layers: int = setting(0, "hidden layers of the MLP heads", HIDDEN_LAYERS, label="hidden layers")
    hidden_dropout: float = setting(0.2, "dropout in the heads", DROPOUT, phase=True)
    head: Literal[HEAD_KINDS] = setting("mlp", "the task heads' kind (rnn/lstm read token states)")
    head_size: int = setting(128, "the recurrent head's hidden size", AT_LEAST_1, used_when=lambda c: c.head != "mlp")
    head_cls: bool = setting(
        False,
        "concatenate the [CLS] state to the recurrent feature",
        used_when=lambda c: c.head != "mlp",
        label="+ [CLS] embedding",
    )
    head_tasks: Literal[HEAD_TASKS] = setting(
        "all",
        "which tasks get the recurrent head (others: MLP on [CLS])",
        used_when=lambda c: c.head != "mlp",
        label="recurrent head for",
    )
    pals: bool = setting(False, "projected attention layers (PALs) in the encoder", label="PALs")
    pal_size: int = setting(
        132, "the PALs' hidden size (a multiple of pal_heads)", AT_LEAST_1, used_when=lambda c: c.pals
    )
    pal_heads: int = setting(12, "the PALs' attention heads", AT_LEAST_1, used_when=lambda c: c.pals)
    unpad: bool = setting(  # keyed dropout hashes padded coordinates: such runs (and packs) keep the padded layout
        True,
        "a BERT encoder computes on the real tokens only (mtlib.model.unpadded)",
        used_when=lambda c: c.dropout_rng == "torch",
        label="unpadded encoder",
    )

    # --- optimisation
    lr: float = setting(1e-5, "the learning rate", POSITIVE, phase=True, label="learning rate")
    head_lr: float | None = setting(  # short runs need the heads to move
        None,
        "a separate learning rate for the task heads (null: lr)",
        POSITIVE_OR_NULL,
        phase=True,
        identity=lambda c: c.head_lr if c.head_lr is not None else c.lr,
    )
    lr_schedule: Literal[LR_SCHEDULES] = setting(
        "constant", "after warmup: constant (the original) or linear decay", phase=True
    )
    warmup_ratio: float = setting(0.0, "the share of updates that warm the learning rate up", UNIT, phase=True)
    batch_size: Mapping[str, int] = setting(
        help="examples per batch, per task",
        phase=True,
        factory=lambda: {"sst": 32, "para": 16, "sts": 32},
        identity=lambda c: {t: c.batch_size[t] for t in c.tasks},
    )
    epochs: int = setting(10, "epochs (of a phase)", AT_LEAST_1, phase=True)
    batches_per_epoch: int = setting(
        300, "scheduler batches (single-task steps) per epoch", AT_LEAST_1, phase=True, label="batches / epoch"
    )
    patience: int = setting(3, "epochs without a better dev mean before stopping", AT_LEAST_1, phase=True)
    sampler: Literal[SAMPLERS] = setting(  # gradient methods take one batch of every task
        "pal",
        "which task the next single-task step trains",
        phase=True,
        label="task sampler",
        used_when=lambda c: c.gradient_method == "none",
    )
    pal_counts: Literal[PAL_COUNTS] = setting(  # the original used batches
        "examples",
        "N_t of the PAL schedule: train examples or batches of them",
        phase=True,
        used_when=lambda c: c.compromise or c.sampler in ("pal", "pal_control") and c.gradient_method == "none",
    )
    freeze: Literal[FREEZE_MODES] = setting(
        "none", "what stays frozen: nothing, the encoder, all but the PALs", phase=True, label="frozen"
    )
    train_pals: bool = setting(
        True,
        "false keeps PALs frozen (exactly neutral) in a phase",
        phase=True,
        used_when=lambda c: c.pals,
        label="PALs trained",
    )
    init_checkpoint: str | None = setting(  # the parent run counts, not where the outputs folder happens to be
        None,
        "a best.pt (or last.pt) to start from (PAL keys may be missing)",
        NON_EMPTY_PATH,
        identity=lambda c: "/".join(Path(c.init_checkpoint).parts[-3:]) if c.init_checkpoint else None,
    )

    # --- gradient methods (one batch per task per update, combined on the shared encoder)
    gradient_method: Literal[GRADIENT_METHODS] = setting(
        "none", "how per-task gradients are combined (none: single-task steps)", phase=True, label="gradient method"
    )
    gradvac_beta: float = setting(
        1e-2,
        "GradVac's EMA rate",
        UNIT,
        phase=True,
        label="GradVac β",
        used_when=lambda c: c.gradient_method == "gradvac",
    )
    gradvac_update: Literal[GRADVAC_UPDATES] = setting(  # on_fire = the original's quirk
        "every", "when GradVac's EMA moves", phase=True, used_when=lambda c: c.gradient_method == "gradvac"
    )
    cagrad_c: float = setting(
        0.4,
        "CAGrad's ball radius (the paper's 0.4)",
        NON_NEGATIVE,
        phase=True,
        used_when=lambda c: c.gradient_method == "cagrad",
        label="CAGrad c",
    )
    loss_weighting: Literal[LOSS_WEIGHTINGS] = setting(  # runs from before loss weighting keep their run id
        "none",
        "per-task loss weights (mtlib.methods.loss_weighting)",
        phase=True,
        id_skips_default=True,
        label="loss weighting",
    )
    loss_weighting_lr: float = setting(
        0.025,
        "the private Adam of uncertainty's log-variances and FAMO's logits",
        POSITIVE,
        phase=True,
        used_when=lambda c: c.loss_weighting in ("uncertainty", "famo"),
        label="weighting lr",
    )
    dwa_temperature: float = setting(
        2.0,
        "DWA's softmax temperature",
        POSITIVE,
        phase=True,
        used_when=lambda c: c.loss_weighting == "dwa",
        label="DWA temperature",
    )
    smart_weight: float = setting(
        0.0, "lambda of the SMART regulariser (0: off)", ZERO_IS_OFF, phase=True, label="SMART weight"
    )
    # smart_pytorch: noise renormalised to unit inf-norm after each ascent step (MT-DNN and the package the
    # original used); paper: step_size * g/|g|_inf added to the noise (tiny: ~1e-6)
    smart_step_rule: Literal[STEP_RULES] = setting(
        "smart_pytorch", "SMART's ascent step", phase=True, used_when=lambda c: c.smart_weight != 0
    )
    compromise: bool = setting(
        False,
        "Gradient Compromise: K pal_control batches per update, n_t^beta weights",
        phase=True,
        label="Gradient Compromise",
    )
    compromise_k: int = setting(
        16,
        "batches per compromise update",
        AT_LEAST_1,
        phase=True,
        used_when=lambda c: c.compromise,
        label="compromise K",
    )
    compromise_combine: Literal[COMPROMISE_COMBINES] = setting(
        "encourage",
        "how a compromise group is drawn",
        phase=True,
        used_when=lambda c: c.compromise,
        label="compromise combine",
    )
    compromise_counts: Literal[COMPROMISE_COUNTS] = setting(  # cumulative = the original's bug
        "update", "n_t: this update's batches, or since the epoch began", phase=True, used_when=lambda c: c.compromise
    )
    compromise_divide: bool = setting(  # at its default, not in the run id (runs from before it keep their id)
        True,
        "false: the groups' losses summed without the n_t^beta divisors (an ablation)",
        phase=True,
        used_when=lambda c: c.compromise,
        id_skips_default=True,
        label="compromise ÷ nₜ^β",
    )

    # --- phases: a list of overrides of the phase keys above, run one after the other
    # (e.g. individual pretraining of the heads with the encoder frozen, then fine-tuning).
    phases: tuple[Mapping[str, Any], ...] = setting(
        (),
        "overrides of the phase keys, run one after the other",
        identity=lambda c: [_phase_settings(p) for p in c.phase_configs()],
    )

    # --- evaluation and running
    dev_split: Literal[DEV_SPLITS] = setting(
        "halves",
        "halves: choose epochs on one dev half, report the other; none: both on all (the paper)",
        identity=lambda c: dev_halves.RULE if c.dev_split == "halves" else "none",
    )
    dev_subsample: int | None = setting(
        None, "per task, a fixed dev subsample for per-epoch evaluation (of the selection half)", AT_LEAST_1_OR_NULL
    )
    final_dev: Literal[FINAL_DEV] = setting("full", "the final evaluation's dev set: all of it, or dev_subsample")
    final_dev_max: int | None = setting(
        None,
        "per task, cap the final dev set (a fixed subsample; quick profiles)",
        AT_LEAST_1_OR_NULL,
        used_when=lambda c: c.final_dev == "full",
    )
    dropout_rng: Literal[DROPOUT_RNGS] = setting(  # keyed: what packed runs need (mtlib.model.keyed_dropout)
        "torch",
        "dropout masks: torch's generator, or keyed (hashed from seed, task, batch, position)",
        id_skips_default=True,
    )
    eval_batch_size: int = setting(128, "examples per evaluation batch", AT_LEAST_1)
    predict_test: bool = setting(True, "write test-set predictions at the end")
    precision: Literal[PRECISIONS] = setting(  # the resolved precision counts in the run id instead
        "auto", "auto: the fastest precision this machine trains correctly in", result=False
    )
    compile: bool = setting(False, "torch.compile the encoder (pays on GPUs, not on a 2-core CPU)", result=False)
    device: str = setting("auto", "auto | cpu | cuda | cuda:N | mps", DEVICE, result=False)
    threads: int | None = setting(None, "CPU threads (null: torch's default)", AT_LEAST_1_OR_NULL, result=False)
    progress: bool = setting(True, "show progress bars while training", result=False)
    log_every: int = setting(25, "updates between training-loss lines in history.jsonl", AT_LEAST_1, result=False)
    tensorboard: bool = setting(False, "TensorBoard event files beside history.jsonl", result=False)

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
                errors.append(
                    Problem(
                        f"config: key 'loss_weighting' has value {self.loss_weighting!r}; expected {expected}",
                        "loss_weighting",
                    )
                )
        if errors:
            raise ConfigError(errors)

    # ---- construction
    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], source: str = "config", locations: Mapping[str, str] | None = None
    ) -> "RunConfig":
        """Build and check a config; an error names where its key was set ({key path: place}), else ``source``."""
        if not isinstance(data, Mapping):
            raise ConfigError([f"{source}: expected a mapping of config keys, got {type(data).__name__}"])
        check_keys(data, source, locations)
        try:
            return cls(**data)
        except ConfigError as e:
            lines = [located(x, locate(getattr(x, "key", None), source, locations)) for x in e.errors]
            raise ConfigError(lines) from None

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
        return [
            RunConfig.from_dict(
                {**base, **{k: v for k, v in plain(ph).items() if k != "name"}},
                source=f"phases[{i}] ({ph.get('name', f'phase{i}')})",
            )
            for i, ph in enumerate(self.phases)
        ]

    def phase_names(self) -> list[str]:
        return [ph.get("name", f"phase{i}") for i, ph in enumerate(self.phases)] or ["train"]

    def settings(self) -> dict[str, Any]:
        """Every setting that changes results, phase by phase, with settings a phase ignores left out (the
        sampler of a gradient-method phase, GradVac's beta under PCGrad, ...): each field's ``result``,
        ``used_when`` and ``identity`` say how. Paths, the seed (it names its own folder), the data folder (its
        files' checksums count instead, see ``mtlib.train.identity``), progress output and the raw
        device/precision strings (the resolved ones count) are not settings."""
        return result_settings(self, [k for k in SETTINGS if k not in PHASE_KEYS])

    def settings_hash(self) -> str:
        """Short id of ``settings()``: the same for every seed, device and data folder of one configuration."""
        return hashlib.sha256(json.dumps(self.settings(), sort_keys=True).encode()).hexdigest()[:10]

    def __hash__(self) -> int:
        return hash(self.settings_hash())


SETTINGS: dict[str, Setting] = settings_of(RunConfig)  # {key: its description}, in field order
PHASE_KEYS = phase_keys(RunConfig)  # keys a phase may override: training settings, not the model's shape or the data
NON_RESULT_KEYS = frozenset(k for k, spec in SETTINGS.items() if not spec.result)


def _phase_settings(p: RunConfig) -> dict[str, Any]:
    """One phase's part of ``settings()``: its phase keys in sorted order, those it uses."""
    return result_settings(p, sorted(PHASE_KEYS))


def settings_help() -> str:
    """The config keys and their help, one line each (``python -m mtlib run --help``)."""
    return settings_help_of(RunConfig)


@functools.cache
def field_types() -> dict[str, Any]:
    """{field name: type} of RunConfig; cached and shared, so callers must not mutate it."""
    return field_types_of(RunConfig)


def allowed_values(key: str) -> str:
    return describe(field_types()[key])


def check_keys(data: Mapping[str, Any], source: str, locations: Mapping[str, str] | None = None) -> None:
    unknown = [k for k in data if k not in field_types()]
    if unknown:
        raise ConfigError(
            [
                Problem(
                    f"{locate(k, source, locations)}: unknown config key {k!r}; allowed keys: "
                    f"{', '.join(sorted(field_types()))}",
                    k,
                )
                for k in unknown
            ]
        )


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


def parse_overrides(texts: list[str]) -> dict[str, Any]:
    """Every ``--set key=value`` of a command; all bad ones reported together in one ConfigError."""
    overrides, problems = {}, []
    for text in texts:
        try:
            key, value = parse_override(text)
        except ConfigError as err:
            problems += err.errors
            continue
        overrides[key] = value
    if problems:
        raise ConfigError(problems)
    return overrides


def resolve_path(path: str | Path) -> Path:
    """Relative paths are relative to the repository root (not the working directory)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path
