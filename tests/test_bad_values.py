"""Every bad value gets one clear line: config keys (built directly, through the resolver, from a YAML file and
through the CLI), YAML syntax, profiles, course data files and the scorer.

Each case checks the exact line (the key, the file and line where a file is involved, what was expected) and,
through ``python -m mtlib``, that exactly one ``error:`` line per problem reaches stderr, with no traceback,
and the exit status is 2; ``--debug`` re-raises.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mtlib.cli import main
from mtlib.config.run_config import RunConfig, parse_override
from mtlib.config.checks import NAME_RULE
from mtlib.config.types import ConfigError
from mtlib.data.metrics import read_predictions, score, score_file, score_predictions, write_predictions
from mtlib.data.parse import Example, read_task_file
from mtlib.experiments.resolve import PROFILES_DIR, load_profile, resolve_config

MINI = Path(__file__).parent / "fixtures" / "mini_data"
HINT = "(run with --debug for the traceback)"


def cli(capsys, argv: list[str]) -> tuple[int, list[str]]:
    """(exit status, the ``error:`` lines); stderr holds nothing else but the --debug hint, and no traceback."""
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert "Traceback" not in captured.err
    errors = [line[len("error: ") :] for line in lines if line.startswith("error: ")]
    assert all(line.startswith("error: ") or line == HINT for line in lines), captured.err
    return code, errors


def write(tmp_path: Path, text: str | bytes, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- one bad key: --set text -> the one error line
# Built through the resolver (resolve_config("smoke", **override)) and through the CLI (--set KEY=VALUE): a
# value given as an override is named as coming from "overrides".
OVERRIDES = [
    ("name=../../x", f"key 'name' has value '../../x'; expected {NAME_RULE}"),
    ("name=.hidden", f"key 'name' has value '.hidden'; expected {NAME_RULE}"),
    ("name=''", f"key 'name' has value ''; expected {NAME_RULE}"),
    ("log_every=0", "key 'log_every' has value 0; expected an integer >= 1"),
    ("pal_heads=0", "key 'pal_heads' has value 0; expected an integer >= 1"),
    ("epochs=0", "key 'epochs' has value 0; expected an integer >= 1"),
    ("patience=0", "key 'patience' has value 0; expected an integer >= 1"),
    ("batches_per_epoch=-3", "key 'batches_per_epoch' has value -3; expected an integer >= 1"),
    ("eval_batch_size=0", "key 'eval_batch_size' has value 0; expected an integer >= 1"),
    ("max_chars=0", "key 'max_chars' has value 0; expected an integer >= 1"),
    ("head_size=0", "key 'head_size' has value 0; expected an integer >= 1"),
    ("threads=-1", "key 'threads' has value -1; expected an integer >= 1, or null"),
    ("threads=0", "key 'threads' has value 0; expected an integer >= 1, or null"),
    ("max_train_examples=0", "key 'max_train_examples' has value 0; expected an integer >= 1, or null"),
    ("max_train_examples=-5", "key 'max_train_examples' has value -5; expected an integer >= 1, or null"),
    ("dev_subsample=-1", "key 'dev_subsample' has value -1; expected an integer >= 1, or null"),
    ("final_dev_max=0", "key 'final_dev_max' has value 0; expected an integer >= 1, or null"),
    ("device=tpu9", "key 'device' has value 'tpu9'; expected auto, cpu, cuda, cuda:N or mps"),
    ("device=cuda:-1", "key 'device' has value 'cuda:-1'; expected auto, cpu, cuda, cuda:N or mps"),
    ("device=CPU", "key 'device' has value 'CPU'; expected auto, cpu, cuda, cuda:N or mps"),
    ("lr=0", "key 'lr' has value 0.0; expected a number > 0"),
    ("lr=-1e-5", "key 'lr' has value -1e-05; expected a number > 0"),
    ("head_lr=-0.05", "key 'head_lr' has value -0.05; expected a number > 0, or null (the same as lr)"),
    ("hidden_dropout=1.0", "key 'hidden_dropout' has value 1.0; expected a number in [0, 1)"),
    ("hidden_dropout=-0.1", "key 'hidden_dropout' has value -0.1; expected a number in [0, 1)"),
    ("warmup_ratio=1.5", "key 'warmup_ratio' has value 1.5; expected a number in [0, 1]"),
    ("warmup_ratio=-0.5", "key 'warmup_ratio' has value -0.5; expected a number in [0, 1]"),
    ("gradvac_beta=2", "key 'gradvac_beta' has value 2.0; expected a number in [0, 1]"),
    ("augment_synonym_p=-0.1", "key 'augment_synonym_p' has value -0.1; expected a number in [0, 1]"),
    ("smart_weight=-1", "key 'smart_weight' has value -1.0; expected a number >= 0 (0 = off)"),
    ("n_hidden_layers=17", "key 'n_hidden_layers' has value 17; expected an integer in 0..16"),
    ("seed=-1", "key 'seed' has value -1; expected an integer in 0..2**32-1"),
    ("seed=4294967296", "key 'seed' has value 4294967296; expected an integer in 0..2**32-1"),
    ("seed=1.5", "key 'seed' has value 1.5 (float); expected an integer"),
    (
        "batch_size={sst: 0, para: 8, sts: 8}",
        "key 'batch_size' has value {'sst': 0, 'para': 8, 'sts': 8}; expected an integer >= 1 for each task of "
        "['sst', 'para', 'sts'] ('sst' is 0)",
    ),
    (
        "batch_size={sst: 8, para: 8}",
        "key 'batch_size' has value {'sst': 8, 'para': 8}; expected an integer >= 1 for each task of "
        "['sst', 'para', 'sts'] ('sts' is missing)",
    ),
    (
        "batch_size={sst: 8, para: 8, sts: 8, nli: 4}",
        "key 'batch_size' has value {'sst': 8, 'para': 8, 'sts': 8, 'nli': 4}; expected an integer >= 1 for each "
        "task of ['sst', 'para', 'sts'] ('nli' is not a task)",
    ),
    ("batch_size=[8, 8, 8]", "key 'batch_size' has value [8, 8, 8] (list); expected a mapping of an integer"),
    (
        "batch_size={sst: .nan, para: 8, sts: 8}",
        "key 'batch_size' has value {'sst': nan, 'para': 8, 'sts': 8} (dict); expected a mapping of an integer "
        "(NaN and infinity are not allowed)",
    ),
    (
        "tasks=[]",
        "key 'tasks' has value []; expected distinct tasks among sst, para, sts (declare others in a task_file)",
    ),
    (
        "tasks=[sst, nli]",
        "key 'tasks' has value ['sst', 'nli']; expected distinct tasks among sst, para, sts (declare others in a task_file)",
    ),
    (
        "tasks=[sst, sst]",
        "key 'tasks' has value ['sst', 'sst']; expected distinct tasks among sst, para, sts (declare others in a task_file)",
    ),
    # NaN and infinity (YAML's .nan/.inf, or the words from the command line)
    ("lr=.nan", "key 'lr' has value nan (float); expected a number (NaN and infinity are not allowed)"),
    ("lr=nan", "key 'lr' has value 'nan' (str); expected a number (NaN and infinity are not allowed)"),
    ("lr=.inf", "key 'lr' has value inf (float); expected a number (NaN and infinity are not allowed)"),
    (
        "hidden_dropout=.nan",
        "key 'hidden_dropout' has value nan (float); expected a number (NaN and infinity are not allowed)",
    ),
    (
        "smart_weight=.inf",
        "key 'smart_weight' has value inf (float); expected a number (NaN and infinity are not allowed)",
    ),
    (
        "head_lr=.nan",
        "key 'head_lr' has value nan (float); expected a number or null (NaN and infinity are not allowed)",
    ),
    # wrong types
    ("pals=maybe", "key 'pals' has value 'maybe' (str); expected true or false"),
    ("pals=1", "key 'pals' has value 1 (int); expected true or false"),
    ("epochs=true", "key 'epochs' has value True (bool); expected an integer"),
    ("epochs=1.5", "key 'epochs' has value 1.5 (float); expected an integer"),
    ("lr=fast", "key 'lr' has value 'fast' (str); expected a number"),
    ("tasks=sst", "key 'tasks' has value 'sst' (str); expected a list of a string"),
    (
        "sampler=annealed",
        "key 'sampler' has value 'annealed' (str); expected 'random' | 'round_robin' | 'pal' | 'pal_control'",
    ),
    ("phases={lr: 1}", "key 'phases' has value {'lr': 1} (dict); expected a list of a mapping"),
    ("phases=pretrain", "key 'phases' has value 'pretrain' (str); expected a list of a mapping"),
    # strings that must name something
    ("out_dir=''", "key 'out_dir' has value ''; expected a non-empty string"),
    ("backbone=''", "key 'backbone' has value ''; expected a non-empty string"),
    ("data_dir=''", "key 'data_dir' has value ''; expected a non-empty path, or null"),
    ("init_checkpoint=''", "key 'init_checkpoint' has value ''; expected a non-empty path, or null"),
    # phases: unknown keys, bad values and bad names, each naming the phase
    ("phases=[{lr: -1}]", "phases[0] (phase0): key 'lr' has value -1.0; expected a number > 0"),
    ("phases=[{name: pre, epochs: 0}]", "phases[0] (pre): key 'epochs' has value 0; expected an integer >= 1"),
    (
        "phases=[{name: pre}, {name: fine, warmup_ratio: 2}]",
        "phases[1] (fine): key 'warmup_ratio' has value 2.0; expected a number in [0, 1]",
    ),
    (
        "phases=[{name: pre, lr: .nan}]",
        "phases[0] (pre): key 'lr' has value nan (float); expected a number (NaN and infinity are not allowed)",
    ),
    ("phases=[{name: ../x}]", f"phases[0] has name '../x'; expected {NAME_RULE}"),
    ("phases=[{name: 3}]", f"phases[0] has name 3; expected {NAME_RULE}"),
    ("phases=[pretrain]", "key 'phases' has value ['pretrain'] (list); expected a list of a mapping"),
]


@pytest.mark.parametrize("text,line", OVERRIDES, ids=[t for t, _ in OVERRIDES])
def test_bad_override_is_one_line_when_the_config_is_built(text, line):
    key, value = parse_override(text)
    with pytest.raises(ConfigError) as err:
        resolve_config("smoke", **{key: value})
    assert err.value.errors == [f"overrides: {line}"]
    assert str(err.value) == f"overrides: {line}"


@pytest.mark.parametrize("text,line", OVERRIDES, ids=[t for t, _ in OVERRIDES])
def test_bad_set_is_one_error_line_and_exit_2(capsys, tmp_path, text, line):
    code, errors = cli(capsys, ["run", "smoke", "--set", f"out_dir={tmp_path / 'runs'}", "--set", text])
    assert (code, errors) == (2, [f"overrides: {line}"])
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_values_that_are_valid_are_accepted():
    # lr=1e6 is a number > 0: it fails at run time as a numeric fault, not here
    cfg = resolve_config(
        "smoke",
        lr=1e6,
        head_lr=None,
        hidden_dropout=0.0,
        warmup_ratio=1.0,
        threads=None,
        max_train_examples=1,
        device="cuda:3",
        seed=0,
        name="a.b+c=d-e_f",
    )
    assert cfg.lr == 1e6 and cfg.device == "cuda:3"
    assert resolve_config("smoke", lr="1e-5").lr == 1e-5  # YAML 1.1 reads 1e-5 as a string
    assert resolve_config("smoke", seed=2**32 - 1).seed == 2**32 - 1
    assert resolve_config("study").seed == 11711  # a profile that extends another


def test_the_seed_option_is_checked(capsys):
    code, errors = cli(capsys, ["run", "smoke", "--seed", "-1"])
    assert (code, errors) == (2, ["overrides: key 'seed' has value -1; expected an integer in 0..2**32-1"])
    with pytest.raises(ConfigError) as err:
        resolve_config("smoke", row={"id": "mine", "config": {}}, seed=-1)
    assert err.value.errors == ["overrides: key 'seed' has value -1; expected an integer in 0..2**32-1"]


def test_direct_construction_and_replace_name_the_key():
    with pytest.raises(ConfigError) as err:
        RunConfig(log_every=0)
    assert err.value.errors == ["config: key 'log_every' has value 0; expected an integer >= 1"]
    with pytest.raises(ConfigError) as err:
        RunConfig(lr=-1, epochs=0, hidden_dropout=1.0)
    assert sorted(err.value.errors) == [
        "config: key 'epochs' has value 0; expected an integer >= 1",
        "config: key 'hidden_dropout' has value 1.0; expected a number in [0, 1)",
        "config: key 'lr' has value -1.0; expected a number > 0",
    ]
    with pytest.raises(ConfigError) as err:
        RunConfig().replace(warmup_ratio=1.5)
    assert err.value.errors == ["replace(): key 'warmup_ratio' has value 1.5; expected a number in [0, 1]"]
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({"lr": math.nan}, source="mine")
    assert err.value.errors == [
        "mine: key 'lr' has value nan (float); expected a number (NaN and infinity are not allowed)"
    ]
    with pytest.raises(ConfigError) as err:
        RunConfig(lr=10**400)  # too large for a float: refused, not an OverflowError
    assert err.value.errors[0].startswith("config: key 'lr' has value 1000") and "expected a number" in str(err.value)


def test_two_bad_keys_give_two_lines(capsys):
    with pytest.raises(ConfigError) as err:
        resolve_config("smoke", log_every=0, device="tpu9")
    assert sorted(err.value.errors) == [
        "overrides: key 'device' has value 'tpu9'; expected auto, cpu, cuda, cuda:N or mps",
        "overrides: key 'log_every' has value 0; expected an integer >= 1",
    ]
    code, errors = cli(capsys, ["run", "smoke", "--set", "log_every=0", "--set", "device=tpu9"])
    assert code == 2 and sorted(errors) == sorted(err.value.errors)
    # two bad values inside one phase: two lines, each naming the phase
    code, errors = cli(capsys, ["run", "smoke", "--set", "phases=[{name: pre, lr: -1, epochs: 0}]"])
    assert code == 2 and sorted(errors) == [
        "overrides: phases[0] (pre): key 'epochs' has value 0; expected an integer >= 1",
        "overrides: phases[0] (pre): key 'lr' has value -1.0; expected a number > 0",
    ]


def test_unknown_keys_one_line_each(capsys):
    with pytest.raises(ConfigError) as err:
        resolve_config("smoke", learning_rate=1e-3, epoch=2)
    assert len(err.value.errors) == 2
    for line, key in zip(err.value.errors, ("learning_rate", "epoch")):
        assert line.startswith(f"overrides: unknown config key {key!r}; allowed keys: ")
        assert "lr" in line and "epochs" in line and "\n" not in line
    code, errors = cli(capsys, ["run", "smoke", "--set", "learning_rate=1e-3", "--set", "epoch=2"])
    assert code == 2 and len(errors) == 2  # every bad --set is reported, not only the first
    assert errors[0].startswith("--set: unknown config key 'learning_rate'; allowed keys: ")
    assert errors[1].startswith("--set: unknown config key 'epoch'; allowed keys: ")
    code, errors = cli(capsys, ["run", "smoke", "--set", "phases=[{name: pre, pair_mode: concat_embed}]"])
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith("overrides: phases[0] has key 'pair_mode', which a phase cannot change; allowed: ")
    assert "freeze" in errors[0] and "lr" in errors[0]
    code, errors = cli(capsys, ["run", "smoke", "--set", "epochs"])
    assert (code, errors) == (2, ["--set expects key=value, got 'epochs'"])


def test_debug_reraises(capsys):
    with pytest.raises(ConfigError, match="key 'log_every' has value 0"):
        main(["--debug", "run", "smoke", "--set", "log_every=0"])
    with pytest.raises(ConfigError, match="key 'log_every' has value 0"):  # --debug after the command works too
        main(["run", "smoke", "--set", "log_every=0", "--debug"])
    with pytest.raises(ValueError, match="ids-sst-dev.csv line 1: expected a header"):  # not a prediction file
        main(["score", "--task", "sst", "--debug", str(MINI / "ids-sst-dev.csv"), str(MINI / "ids-sst-dev.csv")])
    capsys.readouterr()


@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7")
def test_unavailable_device_is_refused_before_anything_is_written(capsys, tmp_path):
    code, errors = cli(capsys, ["run", "smoke", "--set", "device=cuda:7", "--set", f"out_dir={tmp_path / 'runs'}"])
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith("config: key 'device' has value 'cuda:7', but this machine has ")
    assert "usable CUDA device(s); expected auto" in errors[0]
    assert not (tmp_path / "runs").exists()


def test_a_bad_row_value_names_the_row(capsys):
    with pytest.raises(ConfigError) as err:
        resolve_config("smoke", row={"id": "mine", "config": {"lr": -1}})
    assert err.value.errors == ["row 'mine': key 'lr' has value -1.0; expected a number > 0"]
    with pytest.raises(ConfigError) as err:
        resolve_config("smoke", row={"id": "../mine", "config": {}})
    assert err.value.errors == [f"row '../mine': key 'name' has value '../mine'; expected {NAME_RULE}"]
    # a value set by a row of params/experiments.yaml is named at the row's line
    from mtlib.experiments.rows import EXPERIMENTS, get_row

    number = next(i for i, line in enumerate(EXPERIMENTS.read_text().splitlines(), 1) if "id: rnn128" in line)
    number += next(i for i, line in enumerate(EXPERIMENTS.read_text().splitlines()[number:], 1) if "config:" in line)
    assert get_row("rnn128")["config"]["head"] == "rnn"
    code, errors = cli(capsys, ["run", "smoke", "--row", "rnn128", "--set", "pair_mode=concat_embed"])
    assert (code, errors) == (
        2,
        [
            f"{EXPERIMENTS} line {number} (row 'rnn128'): key 'head' has value 'rnn'; expected "
            "mlp with pair_mode 'concat_embed' (rnn/lstm read token states: use "
            "'concat_sentences')"
        ],
    )
    code, errors = cli(capsys, ["run", "smoke", "--row", "nonesuch"])
    assert code == 2 and len(errors) == 1 and errors[0].startswith("no row 'nonesuch' in params/experiments.yaml")


# ---------------------------------------------------------------- YAML files: the file and the line
YAML_FILES = [
    (
        "syntax_indent",
        "epochs: 2\n  lr: 3\n",
        "{path} line 2, column 5: YAML syntax error: mapping values are not allowed here",
    ),
    (
        "syntax_bracket",
        "epochs: 2\nlr: [1, 2\n",
        "{path} line 3, column 1: YAML syntax error: expected ',' or ']', but got '<stream end>'",
    ),
    (
        "syntax_tab",
        "epochs: 2\n\tlr: 3\n",
        "{path} line 2, column 1: YAML syntax error: found character '\\t' that cannot start any token",
    ),
    (
        "top_level_list",
        "- epochs: 2\n- lr: 1.0e-3\n",
        "{path} line 1: expected a mapping of config keys at the top level, got a list",
    ),
    (
        "top_level_scalar",
        "just some words\n",
        "{path} line 1: expected a mapping of config keys at the top level, got a str",
    ),
    (
        "duplicate_key",
        "epochs: 2\nlr: 1.0e-3\nepochs: 3\n",
        "{path} line 3: key 'epochs' appears twice (first on line 1); give it once",
    ),
    (
        "duplicate_in_phase",
        "phases:\n  - {name: a, lr: 1.0e-3, lr: 2.0e-3}\n",
        "{path} line 2: key 'phases[0].lr' appears twice (first on line 2); give it once",
    ),
    (
        "not_utf8",
        b"epochs: 2\nname: caf\xe9\n",
        "{path} line 2: not UTF-8 text (byte 19: invalid continuation byte); is it a YAML file?",
    ),
    ("lr", "epochs: 2\nlr: -1\n", "{path} line 2: key 'lr' has value -1.0; expected a number > 0"),
    (
        "log_every",
        "# a comment\n\nlog_every: 0\n",
        "{path} line 3: key 'log_every' has value 0; expected an integer >= 1",
    ),
    ("name", "name: ../../x\n", "{path} line 1: key 'name' has value '../../x'; expected " + NAME_RULE),
    (
        "pals_maybe",
        'epochs: 1\npals: "maybe"\n',
        "{path} line 2: key 'pals' has value 'maybe' (str); expected true or false",
    ),
    (
        "nan",
        "lr: .nan\n",
        "{path} line 1: key 'lr' has value nan (float); expected a number (NaN and infinity are not allowed)",
    ),
    (
        "batch_size",
        "batch_size:\n  sst: 0\n  para: 8\n  sts: 8\n",
        "{path} line 1: key 'batch_size' has value {'sst': 0, 'para': 8, 'sts': 8}; expected an integer >= 1 for "
        "each task of ['sst', 'para', 'sts'] ('sst' is 0)",
    ),
    (
        "phase_value",
        "epochs: 2\nphases:\n  - name: pre\n    lr: 1.0e-3\n  - name: fine\n    lr: -1\n",
        "{path} line 6: phases[1] (fine): key 'lr' has value -1.0; expected a number > 0",
    ),
    (
        "phase_unknown_key",
        "phases:\n  - name: pre\n    backbone: bert\n",
        "{path} line 3: phases[0] has key 'backbone', which a phase cannot change; allowed: batch_size, "
        "batches_per_epoch, cagrad_c, compromise, compromise_combine, compromise_counts, compromise_divide, "
        "compromise_k, dwa_temperature, epochs, freeze, gradient_method, gradvac_beta, gradvac_update, head_lr, "
        "hidden_dropout, loss_weighting, loss_weighting_lr, lr, lr_schedule, name, pal_counts, "
        "patience, sampler, smart_step_rule, smart_weight, train_pals, warmup_ratio",
    ),
    ("phase_name", "phases:\n  - name: ../pre\n", "{path} line 2: phases[0] has name '../pre'; expected " + NAME_RULE),
    (
        "phases_mapping",
        "phases: {lr: 1}\n",
        "{path} line 1: key 'phases' has value {'lr': 1} (dict); expected a list of a mapping",
    ),
    (
        "phase_overrides_value",
        "phases: [{name: pre}]\nphase_overrides:\n  pre: {lr: -1}\n",
        "{path} line 3: phases[0] (pre): key 'lr' has value -1.0; expected a number > 0",
    ),
    (
        "phase_overrides_key",
        "phase_overrides:\n  pre: {backbone: x}\n",
        "{path} line 2: phase_overrides['pre'] has key 'backbone', which a phase cannot change; allowed: batch_size, "
        "batches_per_epoch, cagrad_c, compromise, compromise_combine, compromise_counts, compromise_divide, "
        "compromise_k, dwa_temperature, epochs, freeze, gradient_method, gradvac_beta, gradvac_update, head_lr, "
        "hidden_dropout, loss_weighting, loss_weighting_lr, lr, lr_schedule, pal_counts, "
        "patience, sampler, smart_step_rule, smart_weight, train_pals, warmup_ratio",
    ),
    (
        "phase_overrides_list",
        "phase_overrides: [pre]\n",
        "{path} line 1: key 'phase_overrides' has value ['pre']; expected a mapping of phase name -> phase keys",
    ),
    (
        "seeds_empty",
        "epochs: 1\nseeds: []\n",
        "{path} line 2: key 'seeds' has value []; expected a non-empty list of integers in 0..2**32-1",
    ),
    (
        "seeds_word",
        "seeds: [a]\n",
        "{path} line 1: key 'seeds' has value ['a']; expected a non-empty list of integers in 0..2**32-1",
    ),
    (
        "seeds_negative",
        "seeds: [1, -1]\n",
        "{path} line 1: key 'seeds' has value [1, -1]; expected a non-empty list of integers in 0..2**32-1",
    ),
    (
        "seeds_scalar",
        "seeds: 3\n",
        "{path} line 1: key 'seeds' has value 3; expected a non-empty list of integers in 0..2**32-1",
    ),
    (
        "description",
        "description: [a, b]\n",
        "{path} line 1: key 'description' has value ['a', 'b']; expected a string",
    ),
    (
        "extends_number",
        "extends: 3\n",
        "{path} line 1: key 'extends' has value 3; expected a profile name or a YAML file path",
    ),
    (
        "extends_missing_profile",
        "epochs: 1\nextends: nonesuch\n",
        "{path} line 2: key 'extends': profile 'nonesuch' not found at "
        f"{PROFILES_DIR / 'nonesuch.yaml'}; "
        f"available: {', '.join(sorted(p.stem for p in PROFILES_DIR.glob('*.yaml')))}",
    ),
    ("extends_self", "extends: extends_self.yaml\n", "{path} line 1: key 'extends' forms a cycle ({path} -> {path})"),
    (
        "extends_smoke_then_bad",
        "extends: smoke\nepochs: 0\n",
        "{path} line 2: key 'epochs' has value 0; expected an integer >= 1",
    ),
]


@pytest.mark.parametrize("name,text,line", YAML_FILES, ids=[n for n, _, _ in YAML_FILES])
def test_bad_yaml_file_is_one_line_with_file_and_line(capsys, tmp_path, name, text, line):
    path = write(tmp_path, text, f"{name}.yaml")
    expected = line.replace("{path}", str(path))
    with pytest.raises(ConfigError) as err:
        resolve_config(path)
    assert err.value.errors == [expected]
    code, errors = cli(capsys, ["run", str(path)])
    assert (code, errors) == (2, [expected])


def test_yaml_two_bad_keys_give_two_lines_each_with_its_line(capsys, tmp_path):
    path = write(tmp_path, "epochs: 0\nbackbone: tiny-random\nwarmup_ratio: 1.5\n")
    expected = [
        f"{path} line 1: key 'epochs' has value 0; expected an integer >= 1",
        f"{path} line 3: key 'warmup_ratio' has value 1.5; expected a number in [0, 1]",
    ]
    with pytest.raises(ConfigError) as err:
        resolve_config(path)
    assert sorted(err.value.errors) == expected
    code, errors = cli(capsys, ["run", str(path)])
    assert code == 2 and sorted(errors) == expected
    # an override replaces the file's value: its error names the override, not the file
    code, errors = cli(capsys, ["run", str(path), "--set", "epochs=-2", "--set", "warmup_ratio=0.1"])
    assert (code, errors) == (2, ["overrides: key 'epochs' has value -2; expected an integer >= 1"])


def test_yaml_unknown_key_names_file_and_line(capsys, tmp_path):
    path = write(tmp_path, "epochs: 1\nlearning_rate: 1.0e-3\n")
    with pytest.raises(ConfigError) as err:
        resolve_config(path)
    assert len(err.value.errors) == 1
    assert err.value.errors[0].startswith(f"{path} line 2: unknown config key 'learning_rate'; allowed keys: ")
    code, errors = cli(capsys, ["run", str(path)])
    assert (code, errors) == (2, err.value.errors)


def test_extends_cycle_and_a_key_set_in_the_parent(capsys, tmp_path):
    a = write(tmp_path, "epochs: 1\nextends: b.yaml\n", "a.yaml")
    b = write(tmp_path, "extends: a.yaml\n", "b.yaml")
    expected = f"{b} line 1: key 'extends' forms a cycle ({a} -> {b} -> {a})"
    with pytest.raises(ConfigError) as err:
        resolve_config(a)
    assert err.value.errors == [expected]
    assert cli(capsys, ["run", str(a)]) == (2, [expected])
    # a bad value set in the parent is named at the parent's line
    write(tmp_path, "epochs: 1\nlr: -1\n", "parent.yaml")
    child = write(tmp_path, "extends: parent.yaml\nepochs: 2\n", "child.yaml")
    with pytest.raises(ConfigError) as err:
        resolve_config(child)
    assert err.value.errors == [f"{tmp_path / 'parent.yaml'} line 2: key 'lr' has value -1.0; expected a number > 0"]


def test_missing_profile_and_missing_file(capsys, tmp_path):
    available = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
    expected = f"profile 'nonesuch' not found at {PROFILES_DIR / 'nonesuch.yaml'}; available: {available}"
    with pytest.raises(ConfigError) as err:
        load_profile("nonesuch")
    assert err.value.errors == [expected]
    assert cli(capsys, ["run", "nonesuch"]) == (2, [expected])
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as err:
        resolve_config(missing)
    assert err.value.errors == [f"{missing}: file not found"]
    assert cli(capsys, ["run", str(missing)]) == (2, [f"{missing}: file not found"])
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    assert cli(capsys, ["run", str(folder)]) == (2, [f"{folder}: not a file (a YAML config or profile was expected)"])


# ---------------------------------------------------------------- course data files
HEADERS = {
    "para": "\tid\tsentence1\tsentence2\tis_duplicate\n",
    "sst": "\tid\tsentence\tsentiment\n",
    "sts": "\tid\tsentence1\tsentence2\tsimilarity\n",
}


def course_file(tmp_path: Path, task: str, labels: list[str], name: str = "data.csv") -> Path:
    rows = [
        f"{i}\tid{i}\ta sentence\t{label}\n" if task == "sst" else f"{i}\tid{i}\tone\ttwo\t{label}\n"
        for i, label in enumerate(labels)
    ]
    return write(tmp_path, HEADERS[task] + "".join(rows), name)


LABELS = [
    ("para", ["0.0", "0.7"], "line 3: is_duplicate '0.7' is not 0 or 1"),
    ("para", ["1.9", "1.0"], "line 2: is_duplicate '1.9' is not 0 or 1"),
    ("para", ["1.0", "0.0", "-0.4"], "line 4: is_duplicate '-0.4' is not 0 or 1"),
    ("para", ["2.0"], "line 2: is_duplicate '2.0' is not 0 or 1"),
    ("para", ["nan"], "line 2: is_duplicate 'nan' is not 0 or 1"),
    ("sst", ["4", "5"], "line 3: sentiment '5' is not one of 0, 1, 2, 3, 4"),
    ("sst", ["-1"], "line 2: sentiment '-1' is not one of 0, 1, 2, 3, 4"),
    ("sst", ["2.5"], "line 2: sentiment '2.5' is not one of 0, 1, 2, 3, 4"),
    ("sts", ["4.2", "5.5"], "line 3: similarity '5.5' is not a number in 0..5"),
    ("sts", ["-0.1"], "line 2: similarity '-0.1' is not a number in 0..5"),
    ("sts", ["inf"], "line 2: similarity 'inf' is not a number in 0..5"),
]


@pytest.mark.parametrize("task,labels,message", LABELS, ids=[f"{t}-{ls[-1]}" for t, ls, _ in LABELS])
def test_label_outside_the_task_set_names_file_and_line(capsys, tmp_path, task, labels, message):
    path = course_file(tmp_path, task, labels)
    with pytest.raises(ValueError) as err:
        read_task_file(task, path)
    assert str(err.value) == f"{path} {message}"
    preds = write_predictions(tmp_path / "p.csv", task, [f"id{i}" for i in range(len(labels))], [0] * len(labels))
    code, errors = cli(capsys, ["score", "--task", task, str(preds), str(path)])
    assert (code, errors) == (2, [f"{path} {message}"])


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "the file is empty (expected a header with columns ['id', 'sentence', 'sentiment'])"),
        (b"\n\n", "the file is empty (expected a header with columns ['id', 'sentence', 'sentiment'])"),
        (HEADERS["sst"].encode(), "the file has a header but no rows (expected one sst example per line)"),
        (
            HEADERS["sst"].encode() + b"0\tid0\tcaf\xe9 au lait\t3\n",
            "not UTF-8 text (line 2, byte 32: invalid continuation byte); is it a course csv?",
        ),
        (HEADERS["sst"].encode("utf-16"), "not UTF-8 text (line 1, byte 0: invalid start byte); is it a course csv?"),
    ],
    ids=["empty", "blank-lines", "header-only", "latin-1", "utf-16"],
)
def test_empty_and_undecodable_files_are_named(capsys, tmp_path, content, message):
    path = write(tmp_path, content, "ids-sst-dev.csv")
    with pytest.raises(ValueError) as err:
        read_task_file("sst", path)
    assert str(err.value) == f"{path}: {message}"
    preds = write_predictions(tmp_path / "p.csv", "sst", ["id0"], [3])
    assert cli(capsys, ["score", "--task", "sst", str(preds), str(path)]) == (2, [f"{path}: {message}"])


def test_missing_or_folder_data_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        read_task_file("sts", tmp_path / "sts-dev.csv")
    assert str(err.value) == f"{tmp_path / 'sts-dev.csv'}: file not found (a sts course csv was expected)"
    with pytest.raises(ValueError) as err:
        read_task_file("sts", tmp_path)
    assert str(err.value) == f"{tmp_path}: not a file (a sts course csv was expected)"


# ---------------------------------------------------------------- the scorer
@pytest.mark.parametrize(
    "task,pred,gold,message",
    [
        (
            "sst",
            [5, 1],
            [1, 2],
            "sst prediction 5 is outside the label set (at index 0; 1 of 2 predictions); expected one of 0, 1, 2, 3, 4",
        ),
        (
            "sst",
            [1, 2.5, 7],
            [1, 2, 3],
            "sst predictions must be class ids, got 2.5 (at index 1; 2 of 3 predictions); "
            "expected one of 0, 1, 2, 3, 4",
        ),
        (
            "sst",
            [-1, 1],
            [1, 2],
            "sst prediction -1 is outside the label set (at index 0; 1 of 2 predictions); "
            "expected one of 0, 1, 2, 3, 4",
        ),
        (
            "para",
            [0, 2],
            [0, 1],
            "para prediction 2 is outside the label set (at index 1; 1 of 2 predictions); expected 0 or 1",
        ),
        (
            "para",
            [0.7, 1],
            [0, 1],
            "para predictions must be class ids, got 0.7 (at index 0; 1 of 2 predictions); expected 0 or 1",
        ),
        (
            "para",
            [math.nan, 1],
            [0, 1],
            "para prediction nan is not a finite number (at index 0; 1 of 2 predictions); expected 0 or 1",
        ),
    ],
)
def test_score_refuses_predictions_outside_the_label_set(task, pred, gold, message):
    with pytest.raises(ValueError) as err:
        score(task, np.array(pred, dtype=float), gold)
    assert str(err.value) == message


def test_score_keeps_a_nan_sts_score_for_the_trainer():
    # training reports a diverged model (non-finite STS output) as a numeric fault after scoring: score() gives
    # nan there rather than an error; the scorers of predictions refuse it (below)
    assert math.isnan(score("sts", [math.nan, 1.0, 2.0], [1.0, 2.0, 3.0]))


@pytest.mark.parametrize(
    "task,values,message",
    [
        ("sst", [4, 5, 2], "sst prediction 5 is outside the label set for id b; expected one of 0, 1, 2, 3, 4"),
        ("sst", [4, 2.5, 2], "sst predictions must be class ids, got 2.5 for id b; expected one of 0, 1, 2, 3, 4"),
        ("para", [0, 2, 1], "para prediction 2 is outside the label set for id b; expected 0 or 1"),
        ("sts", [1.0, math.nan, 2.0], "sts prediction nan is not a finite number for id b; expected a finite number"),
        ("sts", [1.0, math.inf, 2.0], "sts prediction inf is not a finite number for id b; expected a finite number"),
    ],
)
def test_score_predictions_refuses_values_outside_the_label_set(capsys, tmp_path, task, values, message):
    gold = [Example(i, ("x",), label) for i, label in zip("abc", [1, 0, 1])]
    with pytest.raises(ValueError) as err:
        score_predictions(task, dict(zip("abc", values)), gold, name="mine")
    assert str(err.value) == f"mine: {message}"
    # a prediction file: the line of the bad value
    path = tmp_path / "p.csv"
    path.write_text("id \t Predicted \n" + "".join(f"{i} , {v} \n" for i, v in zip("abc", values)))
    with pytest.raises(ValueError) as err:
        read_predictions(path, task)
    assert str(err.value) == f"{path} line 3: {message}"
    gold_file = course_file(tmp_path, task, ["1", "0", "1"], "gold.csv")
    path.write_text("id \t Predicted \n" + "".join(f"id{i} , {v} \n" for i, v in enumerate(values)))
    with pytest.raises(ValueError) as err:
        score_file(task, path, gold_file)
    assert str(err.value) == f"{path} line 3: {message.replace('id b', 'id id1')}"
    assert cli(capsys, ["score", "--task", task, str(path), str(gold_file)]) == (2, [str(err.value)])


def test_prediction_file_empty_or_undecodable_is_named(tmp_path):
    empty = write(tmp_path, b"", "empty.csv")
    with pytest.raises(ValueError) as err:
        read_predictions(empty)
    assert str(err.value).startswith(f"{empty}: the file is empty")
    bad = write(tmp_path, b"id \t Predicted_Sentiment \na , \xff \n", "bad.csv")
    with pytest.raises(ValueError) as err:
        read_predictions(bad)
    assert str(err.value) == f"{bad}: not UTF-8 text (line 2, byte 30: invalid start byte); is it a prediction file?"
