"""One description per setting (mtlib.config.settings): every RunConfig field carries its help, range, use and run-id
relevance, and the checks, the run id, the CLI's help and the panel's greying all follow from it."""

import dataclasses
import types

import pytest

from mtlib.cli import build_parser
from mtlib.config.run_config import NON_RESULT_KEYS, PHASE_KEYS, SETTINGS, RunConfig, _phase_settings
from mtlib.config.types import ConfigError
from mtlib.config.settings import Setting, setting, settings_of
from mtlib.notebook.widgets import CONTROLS, PAL_FROM_START, AblationPanel
from mtlib.notebook.widgets.controls import PHASE_TOGGLES, applies, make_control

# What the separate tables said before the settings described themselves (pinned: the run ids depend on it).
OLD_PHASE_KEYS = {
    "lr",
    "head_lr",
    "lr_schedule",
    "warmup_ratio",
    "batch_size",
    "epochs",
    "batches_per_epoch",
    "patience",
    "sampler",
    "pal_counts",
    "freeze",
    "gradient_method",
    "gradvac_beta",
    "gradvac_update",
    "smart_weight",
    "smart_step_rule",
    "compromise",
    "compromise_k",
    "compromise_combine",
    "compromise_counts",
    "hidden_dropout",
    "train_pals",
    "cagrad_c",
    "loss_weighting",
    "loss_weighting_lr",
    "dwa_temperature",
    "compromise_divide",
}
OLD_NON_RESULT_KEYS = {
    "name",
    "seed",
    "out_dir",
    "data_dir",
    "progress",
    "threads",
    "log_every",
    "device",
    "precision",
    "compile",
    "tensorboard",
    "task_file",
}
# (key, a value its range refuses, the expected text) for every key that had a range
BAD = [
    *[
        (k, 0, "an integer >= 1")
        for k in (
            "max_chars",
            "epochs",
            "batches_per_epoch",
            "patience",
            "eval_batch_size",
            "log_every",
            "pal_size",
            "pal_heads",
            "head_size",
            "compromise_k",
        )
    ],
    *[(k, 0, "an integer >= 1, or null") for k in ("max_train_examples", "dev_subsample", "final_dev_max", "threads")],
    ("lr", 0.0, "a number > 0"),
    ("loss_weighting_lr", -1.0, "a number > 0"),
    ("dwa_temperature", 0.0, "a number > 0"),
    ("head_lr", 0.0, "a number > 0, or null (the same as lr)"),
    *[
        (k, 1.5, "a number in [0, 1]")
        for k in ("warmup_ratio", "augment_synonym_p", "augment_deletion_p", "gradvac_beta")
    ],
    ("hidden_dropout", 1.0, "a number in [0, 1)"),
    ("n_hidden_layers", 17, "an integer in 0..16"),
    ("smart_weight", -0.5, "a number >= 0 (0 = off)"),
    ("cagrad_c", -0.5, "a number >= 0"),
    ("seed", 2**32, "an integer in 0..2**32-1"),
    (
        "name",
        "../x",
        "a plain file name (letters, digits, _ . + = -; no '/', not starting with '.'; at most 100 characters)",
    ),
    ("device", "tpu", "auto, cpu, cuda, cuda:N or mps"),
    ("backbone", " ", "a non-empty string"),
    ("out_dir", "", "a non-empty string"),
    ("data_dir", "", "a non-empty path, or null"),
    ("init_checkpoint", " ", "a non-empty path, or null"),
]
GOOD = {
    "max_chars": 1,
    "max_train_examples": None,
    "lr": 1e-9,
    "head_lr": None,
    "warmup_ratio": 1.0,
    "hidden_dropout": 0.0,
    "n_hidden_layers": 16,
    "smart_weight": 0.0,
    "cagrad_c": 0.0,
    "seed": 2**32 - 1,
    "name": "a.b+c=d-e_f",
    "device": "cuda:3",
    "data_dir": None,
    "loss_weighting_lr": 1e-9,
}


def test_every_field_is_a_setting_with_one_line_of_help():
    assert list(SETTINGS) == [f.name for f in dataclasses.fields(RunConfig)]
    for key, spec in SETTINGS.items():
        assert isinstance(spec, Setting), key
        assert spec.help and "\n" not in spec.help and len(spec.help) <= 90, key


def test_a_setting_needs_help_and_a_plain_field_is_refused():
    with pytest.raises(TypeError, match="help"):
        setting(1)

    @dataclasses.dataclass
    class Loose:
        a: int = setting(1, "described")
        b: int = 2

    with pytest.raises(TypeError, match="Loose.b is not declared with setting"):
        settings_of(Loose)


def test_phase_and_result_flags_say_what_the_old_tables_said():
    assert PHASE_KEYS == OLD_PHASE_KEYS
    assert NON_RESULT_KEYS == OLD_NON_RESULT_KEYS
    ranged = {k for k, spec in SETTINGS.items() if spec.range is not None}
    assert ranged == {k for k, _, _ in BAD}


@pytest.mark.parametrize("key,value,expected", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_each_range_refuses_with_its_one_line(key, value, expected):
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({key: value})
    assert err.value.errors == [f"config: key {key!r} has value {value!r}; expected {expected}"]
    assert err.value.errors[0].key == key
    assert SETTINGS[key].range.text == expected


def test_ranges_accept_their_edges():
    cfg = RunConfig.from_dict(GOOD)
    assert all(getattr(cfg, k) == v for k, v in GOOD.items())


def test_a_phase_key_out_of_range_names_the_phase():
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({"phases": [{"name": "pre", "cagrad_c": -1}]})
    assert err.value.errors == ["config: phases[0] (pre): key 'cagrad_c' has value -1.0; expected a number >= 0"]


# ------------------------------------------------------------------ the run id
PINNED_DEFAULT = {
    "tasks": ["sst", "para", "sts"],
    "quora_train": "head+extra",
    "max_chars": 250,
    "max_train_examples": None,
    "batching": "length",
    "augment": False,
    "backbone": "minilm-l6",
    "pooling": "pooler",
    "pair_mode": "concat_sentences",
    "n_hidden_layers": 0,
    "head": "mlp",
    "pals": False,
    "unpad": True,
    "init_checkpoint": None,
    "phases": [
        {
            "batch_size": {"sst": 32, "para": 16, "sts": 32},
            "batches_per_epoch": 300,
            "compromise": False,
            "epochs": 10,
            "freeze": "none",
            "gradient_method": "none",
            "head_lr": 1e-05,
            "hidden_dropout": 0.2,
            "lr": 1e-05,
            "lr_schedule": "constant",
            "pal_counts": "examples",
            "patience": 3,
            "sampler": "pal",
            "smart_weight": 0.0,
            "warmup_ratio": 0.0,
        }
    ],
    "dev_split": "stratified-halves-1",
    "dev_subsample": None,
    "final_dev": "full",
    "final_dev_max": None,
    "eval_batch_size": 128,
    "predict_test": True,
}
BUSY = dict(
    head="lstm",
    pals=True,
    augment=True,
    final_dev="subsample",
    final_dev_max=100,
    tasks=["sst", "sts"],
    init_checkpoint="/x/outputs/runs/base-1234/seed1/best.pt",
    phases=[
        dict(name="pre", freeze="encoder", lr=1e-3, sampler="random", epochs=1),
        dict(
            name="fine",
            gradient_method="gradvac",
            compromise=True,
            compromise_divide=False,
            loss_weighting="dwa",
            smart_weight=1.0,
            head_lr=1e-4,
        ),
    ],
)
PINNED_BUSY = {
    "tasks": ["sst", "sts"],
    "quora_train": "head+extra",
    "max_chars": 250,
    "max_train_examples": None,
    "batching": "length",
    "augment": True,
    "augment_synonym_p": 0.05,
    "augment_deletion_p": 0.1,
    "backbone": "minilm-l6",
    "pooling": "pooler",
    "pair_mode": "concat_sentences",
    "n_hidden_layers": 0,
    "head": "lstm",
    "head_size": 128,
    "head_cls": False,
    "head_tasks": "all",
    "pals": True,
    "pal_size": 132,
    "pal_heads": 12,
    "unpad": True,
    "init_checkpoint": "base-1234/seed1/best.pt",
    "phases": [
        {
            "batch_size": {"sst": 32, "sts": 32},
            "batches_per_epoch": 300,
            "compromise": False,
            "epochs": 1,
            "freeze": "encoder",
            "gradient_method": "none",
            "head_lr": 0.001,
            "hidden_dropout": 0.2,
            "lr": 0.001,
            "lr_schedule": "constant",
            "patience": 3,
            "sampler": "random",
            "smart_weight": 0.0,
            "train_pals": True,
            "warmup_ratio": 0.0,
        },
        {
            "batch_size": {"sst": 32, "sts": 32},
            "batches_per_epoch": 300,
            "compromise": True,
            "compromise_combine": "encourage",
            "compromise_counts": "update",
            "compromise_divide": False,
            "compromise_k": 16,
            "dwa_temperature": 2.0,
            "epochs": 10,
            "freeze": "none",
            "gradient_method": "gradvac",
            "gradvac_beta": 0.01,
            "gradvac_update": "every",
            "head_lr": 0.0001,
            "hidden_dropout": 0.2,
            "loss_weighting": "dwa",
            "lr": 1e-05,
            "lr_schedule": "constant",
            "pal_counts": "examples",
            "patience": 3,
            "smart_step_rule": "smart_pytorch",
            "smart_weight": 1.0,
            "train_pals": True,
            "warmup_ratio": 0.0,
        },
    ],
    "dev_split": "stratified-halves-1",
    "dev_subsample": None,
    "final_dev": "subsample",
    "eval_batch_size": 128,
    "predict_test": True,
}


def test_settings_are_the_pinned_dicts():
    assert RunConfig().settings() == PINNED_DEFAULT
    assert list(RunConfig().settings()) == list(PINNED_DEFAULT)  # the order too (the hash sorts; readers may not)
    busy = RunConfig.from_dict(BUSY)
    assert busy.settings() == PINNED_BUSY
    assert [list(p) for p in busy.settings()["phases"]] == [sorted(p) for p in PINNED_BUSY["phases"]]


@pytest.mark.parametrize(
    "key,value,base,where",
    [
        ("cagrad_c", 0.9, {"gradient_method": "pcgrad"}, {"gradient_method": "cagrad"}),
        ("dwa_temperature", 5.0, {"loss_weighting": "uncertainty"}, {"loss_weighting": "dwa"}),
        ("loss_weighting_lr", 0.1, {"loss_weighting": "dwa"}, {"loss_weighting": "famo", "gradient_method": "sum"}),
        ("gradvac_beta", 0.5, {"gradient_method": "pcgrad"}, {"gradient_method": "gradvac"}),
        ("sampler", "random", {"gradient_method": "pcgrad"}, {"gradient_method": "none"}),
        ("head_size", 256, {"head": "mlp"}, {"head": "rnn"}),
    ],
)
def test_a_setting_counts_in_the_run_id_exactly_where_it_is_used(key, value, base, where):
    unused, used = RunConfig.from_dict(base), RunConfig.from_dict(where)
    assert not SETTINGS[key].used(unused) and SETTINGS[key].used(used)
    assert unused.replace(**{key: value}).settings_hash() == unused.settings_hash()
    assert used.replace(**{key: value}).settings_hash() != used.settings_hash()


def test_settings_added_later_leave_older_run_ids_alone():
    phase = _phase_settings(RunConfig.from_dict({"compromise": True, "gradient_method": "sum"}))
    assert "loss_weighting" not in phase and "compromise_divide" not in phase  # at their defaults
    phase = _phase_settings(
        RunConfig.from_dict(
            {"compromise": True, "gradient_method": "sum", "compromise_divide": False, "loss_weighting": "dwa"}
        )
    )
    assert phase["compromise_divide"] is False and phase["loss_weighting"] == "dwa"


# ------------------------------------------------------------------ the CLI and the panel
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_run_and_sweep_help_list_every_key_with_its_help(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    out = capsys.readouterr().out
    for key, spec in SETTINGS.items():
        assert f"  {key:<22}{spec.help}" in out, key


def test_usage_errors_do_not_list_the_keys(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run"])
    assert "config keys" not in capsys.readouterr().err


def test_control_tooltips_and_bounds_come_from_the_settings():
    defaults = {**RunConfig().to_dict(), "pretrain": False, "pal_mode": PAL_FROM_START}
    for name in CONTROLS:
        spec = PHASE_TOGGLES.get(name) or SETTINGS[name]
        w = make_control(name, defaults[name])
        allowed = f"; allowed: {spec.range.text}" if spec.range else ""  # number boxes are unbounded
        assert w.tooltip == f"config key: {name}; {spec.help}{allowed}"
        if spec.range is not None and hasattr(w, "min") and name != "gradvac_beta":  # a log slider holds exponents
            assert w.min == spec.range.low, name
    assert make_control("n_hidden_layers", 0).max == 3 and make_control("n_hidden_layers", 16).max == 16
    assert make_control("gradvac_beta", 0.01).max == 0  # 10**0: the range's top


def _panel(tmp_path, **kw):
    return AblationPanel("smoke", controls="08_more_methods", out_dir=tmp_path / "runs", **kw)


def _greyed_as_used_when(p):
    now = types.SimpleNamespace(**{**p.start, **p.values()})
    for name, w in p.controls.items():
        assert w.disabled == (not applies(name, now)), name


def test_the_panel_greys_out_exactly_what_used_when_says(tmp_path):
    p = _panel(tmp_path)
    p.set(gradient_method="pcgrad", loss_weighting="none", compromise=False)
    _greyed_as_used_when(p)
    # the three the panel used to leave on although they did nothing
    assert p.controls["cagrad_c"].disabled and p.controls["loss_weighting_lr"].disabled
    assert p.controls["dwa_temperature"].disabled and p.controls["compromise_divide"].disabled
    p.set(gradient_method="cagrad")
    assert not p.controls["cagrad_c"].disabled and p.controls["gradvac_beta"].disabled
    p.set(gradient_method="sum", loss_weighting="dwa")
    assert not p.controls["dwa_temperature"].disabled and p.controls["loss_weighting_lr"].disabled
    p.set(loss_weighting="famo")
    assert not p.controls["loss_weighting_lr"].disabled and p.controls["dwa_temperature"].disabled
    p.set(compromise=True)
    assert not p.controls["compromise_divide"].disabled
    _greyed_as_used_when(p)


def test_the_sampler_is_greyed_out_under_a_gradient_method(tmp_path):
    p = AblationPanel("smoke", controls=["sampler", "gradient_method"], out_dir=tmp_path / "runs")
    p.set(gradient_method="none")
    assert not p.controls["sampler"].disabled
    p.set(gradient_method="pcgrad")
    assert p.controls["sampler"].disabled
    _greyed_as_used_when(p)
