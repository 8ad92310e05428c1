"""RunConfig: every knob of a run, its defaults, YAML loading and validation.

One config in, one run directory out. A config is plain data: it hashes to a short id that names the
run directory, so the same config always maps to the same place (resume, skip) and a changed config
never overwrites an earlier run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from mtlib import TASKS

PairMode = Literal["concat_sentences", "concat_embed"]
Sampler = Literal["random", "round_robin", "pal", "pal_control"]
GradientMethod = Literal["none", "sum", "pcgrad", "gradvac"]
HeadKind = Literal["mlp", "rnn", "lstm"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass
class RunConfig:
    # --- identity
    name: str = "run"
    seed: int = 11711  # the original's seed_everything(11711)
    out_dir: str = "outputs/runs"

    # --- data
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    data_dir: str | None = None
    quora_train: Literal["head", "head+extra"] = "head+extra"
    max_chars: int = 250  # the original's "top 2%" filter is a fixed 250-character cut, train only
    max_train_examples: int | None = None  # per task, a fixed random subset (quick profiles)
    augment: bool = False  # EDA on SST and Quora train (mtlib.augment)
    augment_synonym_p: float = 0.05
    augment_deletion_p: float = 0.1

    # --- model
    backbone: str = "minilm-l6"
    pooling: Literal["pooler", "cls", "mean"] = "pooler"  # the original read the pooler output
    pair_mode: PairMode = "concat_sentences"
    n_hidden_layers: int = 0
    hidden_dropout: float = 0.2
    head: HeadKind = "mlp"
    head_size: int = 128  # RNN/LSTM hidden size
    head_cls: bool = False  # concatenate the [CLS] state to the recurrent feature
    head_tasks: Literal["all", "sts"] = "all"  # which tasks get the recurrent head (others: MLP on [CLS])
    pals: bool = False
    pal_size: int = 132
    pal_heads: int = 12

    # --- optimisation
    lr: float = 1e-5
    head_lr: float | None = None  # a separate LR for the task heads (None: lr); short runs need heads to move
    lr_schedule: Literal["constant", "linear"] = "constant"  # the original: constant, no warmup
    warmup_ratio: float = 0.0
    batch_size: dict[str, int] = field(default_factory=lambda: {"sst": 32, "para": 16, "sts": 32})
    epochs: int = 10
    batches_per_epoch: int = 300  # scheduler batches (single-task steps) per epoch
    patience: int = 3
    sampler: Sampler = "pal"
    pal_counts: Literal["examples", "batches"] = "examples"  # N_t for PAL; the original used batches
    freeze: Literal["none", "encoder", "all_but_pals"] = "none"
    train_pals: bool = True  # False keeps PALs frozen (exactly neutral) in a phase
    init_checkpoint: str | None = None  # a best.pt to start from (PAL keys may be missing)

    # --- gradient methods (one batch per task per update, combined on the shared encoder)
    gradient_method: GradientMethod = "none"
    gradvac_beta: float = 1e-2
    gradvac_update: Literal["every", "on_fire"] = "every"  # on_fire = the original's quirk
    smart_weight: float = 0.0  # lambda of the SMART regulariser; 0 = off
    # smart_pytorch: noise renormalised to unit inf-norm after each ascent step (MT-DNN and the package the
    # original used); paper: step_size * g/|g|_inf added to the noise (tiny: ~1e-6)
    smart_step_rule: Literal["smart_pytorch", "paper"] = "smart_pytorch"
    compromise: bool = False  # Gradient Compromise: K pal_control batches per update, n_t^beta weights
    compromise_k: int = 16
    compromise_combine: Literal["encourage", "force"] = "encourage"
    compromise_counts: Literal["update", "cumulative"] = "update"  # cumulative = the original's bug

    # --- phases: a list of overrides of the fields above, run one after the other
    # (e.g. individual pretraining of the heads with the encoder frozen, then fine-tuning).
    phases: list[dict[str, Any]] = field(default_factory=list)

    # --- evaluation and running
    dev_subsample: int | None = None  # per task, a fixed subsample for per-epoch evaluation
    final_dev: Literal["full", "subsample"] = "full"
    final_dev_max: int | None = None  # per task, cap the final dev set (a fixed subsample; quick profiles)
    eval_batch_size: int = 128
    predict_test: bool = True
    precision: Precision = "auto"  # auto: bf16 where the CPU has AMX / on CUDA, else fp32
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    log_every: int = 25  # updates between training-loss lines in history.jsonl

    def __post_init__(self) -> None:
        validate(self)

    # ---- construction
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "RunConfig":
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a mapping of config keys, got {type(data).__name__}")
        _check_keys(data, source)
        return cls(**{k: _coerce(k, v, source) for k, v in data.items()})

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "RunConfig":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of config keys at the top level")
        if "extends" in data:
            data = load_profile(path)
        for key in PROFILE_ONLY_KEYS:  # profiles carry a seeds list; a single run has one seed
            data.pop(key, None)
        data.update(overrides)
        return cls.from_dict(data, source=str(path))

    def replace(self, **changes: Any) -> "RunConfig":
        _check_keys(changes, "replace()")
        data = self.to_dict()
        data.update({k: _coerce(k, v, "replace()") for k, v in changes.items()})
        return RunConfig(**data)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # ---- identity
    def config_hash(self) -> str:
        """Short id of everything that changes results (not progress bars, paths or threads)."""
        data = self.to_dict()
        for k in NON_RESULT_KEYS:
            data.pop(k, None)
        if data.get("init_checkpoint"):  # the parent run, not where the outputs folder happens to be
            data["init_checkpoint"] = "/".join(Path(data["init_checkpoint"]).parts[-3:])
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]

    def run_dir(self) -> Path:
        """outputs/runs/<name>-<hash>/seed<k>; a relative out_dir is relative to the repository root,
        so JupyterLab (started in notebooks/), papermill and the CLI all write to the same place."""
        return resolve_path(self.out_dir) / f"{self.name}-{self.config_hash()}" / f"seed{self.seed}"

    def phase_configs(self) -> list["RunConfig"]:
        """The run as a list of phases: each phase is this config with its overrides applied."""
        if not self.phases:
            return [self]
        out = []
        for i, overrides in enumerate(self.phases):
            base = {k: v for k, v in self.to_dict().items() if k != "phases"}
            changes = {k: v for k, v in overrides.items() if k != "name"}
            base.update({k: _coerce(k, v, f"phases[{i}]") for k, v in changes.items()})
            try:
                cfg = RunConfig(**base)
            except ValueError as e:
                raise ValueError(f"phases[{i}] ({overrides.get('name', f'phase{i}')}): {e}") from None
            out.append(cfg)
        return out

    def __hash__(self) -> int:  # plain data, hashable to its short id
        return hash(self.config_hash())


PROFILE_ONLY_KEYS = ("seeds", "description", "phase_overrides", "extends")  # profile keys that are not RunConfig keys
# the seed names its own folder under <name>-<hash>/, so the seeds of one config share a hash
NON_RESULT_KEYS = ("progress", "out_dir", "data_dir", "threads", "log_every", "device", "name", "seed")
# Keys a phase may override: training settings, not the model's shape or the data.
PHASE_KEYS = {
    "name", "lr", "head_lr", "lr_schedule", "warmup_ratio", "batch_size", "epochs", "batches_per_epoch", "patience",
    "sampler", "pal_counts", "freeze", "gradient_method", "gradvac_beta", "gradvac_update",
    "smart_weight", "smart_step_rule", "compromise", "compromise_k", "compromise_combine", "compromise_counts",
    "hidden_dropout", "train_pals",
}


UNION_TYPES = (typing.Union, types.UnionType)  # Optional[X] and X | None


@functools.cache
def field_types() -> dict[str, Any]:
    """{field name: type} of RunConfig; cached and shared, so callers must not mutate it."""
    hints = typing.get_type_hints(RunConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(RunConfig)}


def allowed_values(key: str) -> str:
    tp = field_types()[key]
    return _describe(tp)


def _describe(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in UNION_TYPES:
        return " or ".join(_describe(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _check_keys(data: dict[str, Any], source: str) -> None:
    known = field_types()
    unknown = [k for k in data if k not in known]
    if unknown:
        raise ValueError(
            f"{source}: unknown config key(s) {', '.join(map(repr, unknown))}; "
            f"allowed keys: {', '.join(sorted(known))}"
        )


def _coerce(key: str, value: Any, source: str) -> Any:
    """Check one value against the field's type; ints are accepted where floats are expected."""
    tp = field_types()[key]
    ok, coerced = _match(tp, value)
    if not ok:
        raise ValueError(
            f"{source}: key {key!r} has value {value!r} ({type(value).__name__}); expected {_describe(tp)}"
        )
    return coerced


def _match(tp: Any, value: Any) -> tuple[bool, Any]:
    origin = get_origin(tp)
    if tp is Any:
        return True, value
    if origin is Literal:
        return (value in get_args(tp)), value
    if origin in UNION_TYPES:
        for arg in get_args(tp):
            ok, v = _match(arg, value)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):  # YAML reads 1e-5 as a string
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if tp is str:
        return isinstance(value, str), value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            return False, value
        (arg,) = get_args(tp) or (Any,)
        out = []
        for v in value:
            ok, c = _match(arg, v)
            if not ok:
                return False, value
            out.append(c)
        return True, out
    if origin is dict:
        if not isinstance(value, dict):
            return False, value
        _, varg = get_args(tp) or (Any, Any)
        out = {}
        for k, v in value.items():
            ok, c = _match(varg, v)
            if not ok:
                return False, value
            out[k] = c
        return True, out
    return isinstance(value, tp), value


def validate(cfg: RunConfig) -> None:
    """Type-check every field and the combinations that cannot work, naming the key."""
    for f in dataclasses.fields(cfg):
        setattr(cfg, f.name, _coerce(f.name, getattr(cfg, f.name), "config"))
    bad = [t for t in cfg.tasks if t not in TASKS]
    if bad or not cfg.tasks:
        raise ValueError(f"config: key 'tasks' has unknown task(s) {bad}; allowed: {', '.join(TASKS)}")
    missing = [t for t in cfg.tasks if t not in cfg.batch_size]
    if missing or any(v <= 0 for v in cfg.batch_size.values()):
        raise ValueError(f"config: key 'batch_size' needs a positive size for each task {cfg.tasks}")
    if cfg.head != "mlp" and cfg.pair_mode == "concat_embed":
        raise ValueError("config: key 'head' = rnn/lstm reads token states and needs pair_mode 'concat_sentences'")
    if cfg.pals and cfg.pal_size % cfg.pal_heads:
        raise ValueError(f"config: key 'pal_size' ({cfg.pal_size}) must be divisible by 'pal_heads' ({cfg.pal_heads})")
    if cfg.freeze == "all_but_pals" and not cfg.pals:
        raise ValueError("config: key 'freeze' = 'all_but_pals' needs pals: true")
    if cfg.compromise and cfg.gradient_method not in ("pcgrad", "gradvac", "sum"):
        raise ValueError("config: key 'compromise' needs gradient_method pcgrad, gradvac or sum")
    for key in ("epochs", "batches_per_epoch", "patience", "eval_batch_size", "compromise_k"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"config: key {key!r} must be >= 1, got {getattr(cfg, key)}")
    if cfg.compromise and cfg.compromise_k < len(cfg.tasks):
        raise ValueError(f"config: key 'compromise_k' must be >= the number of tasks ({len(cfg.tasks)})")
    for i, ph in enumerate(cfg.phases):
        if not isinstance(ph, dict):
            raise ValueError(f"config: phases[{i}] must be a mapping of overrides")
        unknown = [k for k in ph if k not in PHASE_KEYS]
        if unknown:
            raise ValueError(
                f"config: phases[{i}] has key(s) {unknown} a phase cannot change; "
                f"allowed: {', '.join(sorted(PHASE_KEYS))}"
            )
        for k, v in ph.items():
            if k != "name":
                _coerce(k, v, f"config: phases[{i}]")
    if cfg.phases:  # each phase is a whole config: check its combinations now, not when the phase starts
        cfg.phase_configs()


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is read as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    _check_keys({key: None}, "--set")
    return key, yaml.safe_load(raw)


def load_profile(profile: str | Path) -> dict[str, Any]:
    """A profile file (params/profiles/<name>.yaml) as a dict; `seeds` kept."""
    path = Path(profile)
    if not path.suffix:
        path = PARAMS_DIR / "profiles" / f"{profile}.yaml"
    if not path.exists():
        avail = sorted(p.stem for p in (PARAMS_DIR / "profiles").glob("*.yaml"))
        raise FileNotFoundError(f"profile {str(profile)!r} not found at {path}; available: {', '.join(avail)}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config keys at the top level")
    if "extends" in data:  # a profile may start from another one and change a few keys
        parent = load_profile(data.pop("extends"))
        parent.pop("description", None)
        data = {**parent, **data}
    seeds = profile_seed_list(data)
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"{path}: key 'seeds' must be a list of integers")
    _check_keys({k: v for k, v in data.items() if k not in PROFILE_ONLY_KEYS}, str(path))
    for name, ph in (data.get("phase_overrides") or {}).items():
        if not isinstance(ph, dict) or any(k not in PHASE_KEYS for k in ph):
            raise ValueError(f"{path}: phase_overrides[{name!r}] must map phase keys ({', '.join(sorted(PHASE_KEYS))})")
    return data


def profile_seed_list(data: dict[str, Any]) -> Any:
    """A profile's seeds: its `seeds` list, else its single `seed`, else RunConfig's default seed."""
    return data.get("seeds", [data.get("seed", 11711)])


REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_DIR = REPO_ROOT / "params"


def resolve_path(path: str | Path) -> Path:
    """Relative paths are relative to the repository root (not the working directory)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path
