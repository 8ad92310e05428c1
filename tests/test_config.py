"""mtlib.config.run_config: defaults, YAML loading, validation messages, hashing, phases, overrides, profiles."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from mtlib.config.run_config import PHASE_KEYS, RunConfig, allowed_values, field_types, parse_override
from mtlib.experiments.resolve import load_profile, resolve_config
from mtlib.train.identity import run_dir_for, run_id, run_identity


def write_yaml(tmp_path, data, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_are_valid_and_round_trip():
    cfg = RunConfig()
    assert cfg.tasks == ("sst", "para", "sts")
    assert cfg.sampler == "pal" and cfg.lr == 1e-5 and cfg.epochs == 10
    again = RunConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.settings_hash() == cfg.settings_hash()
    # to_yaml -> resolve_config gives the same config
    assert RunConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg
    # every field has a describable type
    assert set(field_types()) == {f.name for f in dataclasses.fields(RunConfig)}
    assert "'pal_control'" in allowed_values("sampler")


def test_resolve_config_unknown_key_names_it_and_lists_allowed(tmp_path):
    path = write_yaml(tmp_path, {"epochs": 2, "learning_rate": 1e-3})
    with pytest.raises(ValueError) as err:
        resolve_config(path)
    msg = str(err.value)
    assert "'learning_rate'" in msg and "allowed keys" in msg
    assert "lr" in msg and "batches_per_epoch" in msg and str(path) in msg


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("epochs", "three", "an integer"),
        ("sampler", "foo", "'random' | 'round_robin' | 'pal' | 'pal_control'"),
        ("pals", "yes", "true or false"),
        ("batch_size", {"sst": "big"}, "a mapping of an integer"),
        ("max_train_examples", 1.5, "an integer or null"),
        ("lr", "fast", "a number"),
        ("epochs", True, "an integer"),  # a bool is not an int here
    ],
)
def test_wrong_type_names_key_and_expected_values(tmp_path, key, value, expected):
    path = write_yaml(tmp_path, {key: value})
    with pytest.raises(ValueError) as err:
        resolve_config(path)
    msg = str(err.value)
    assert f"key {key!r}" in msg and expected in msg
    with pytest.raises(ValueError, match=f"key '{key}'"):  # direct construction validates too
        RunConfig(**{key: value})


def test_numbers_coerced_for_floats(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-5 as a string and 1 as an int
    path = tmp_path / "cfg.yaml"
    path.write_text("lr: 1e-5\nhidden_dropout: 0\nsmart_weight: 1\n")
    cfg = resolve_config(path)
    assert cfg.lr == 1e-5 and isinstance(cfg.lr, float)
    assert cfg.hidden_dropout == 0.0 and isinstance(cfg.hidden_dropout, float)
    assert isinstance(cfg.smart_weight, float)
    assert RunConfig(lr=1).lr == 1.0
    assert RunConfig().replace(lr="2e-4").lr == 2e-4
    # overrides given to resolve_config win over the file and are checked too
    assert resolve_config(path, lr=3e-5).lr == 3e-5
    with pytest.raises(ValueError, match="'nope'"):
        resolve_config(path, nope=1)


def test_resolve_config_drops_profile_only_keys_and_rejects_non_mappings(tmp_path):
    cfg = resolve_config(write_yaml(tmp_path, {"seeds": [1, 2], "description": "x", "epochs": 2}))
    assert cfg.epochs == 2
    with pytest.raises(ValueError, match="mapping"):
        resolve_config(write_yaml(tmp_path, [1, 2], "list.yaml"))
    with pytest.raises(ValueError, match="missing.yaml: file not found"):
        resolve_config(tmp_path / "missing.yaml")


def test_config_hash_stable_and_only_result_keys():
    a = RunConfig()
    assert a.settings_hash() == RunConfig().settings_hash()
    assert len(a.settings_hash()) == 10
    for change in (
        {"progress": False},
        {"out_dir": "/elsewhere"},
        {"threads": 1},
        {"log_every": 5},
        {"data_dir": "/data"},
    ):
        assert a.replace(**change).settings_hash() == a.settings_hash(), change
    assert a.replace(lr=2e-5).settings_hash() != a.settings_hash()
    # the seed names its own folder under <name>-<hash>/: seeds of one config share the hash, not the folder
    assert a.replace(seed=1).settings_hash() == a.settings_hash()
    assert run_dir_for(a.replace(seed=1)) != run_dir_for(a)
    assert hash(a) == hash(RunConfig())
    assert run_dir_for(a.replace(lr=2e-5)) != run_dir_for(a)
    b = a.replace(out_dir="/x", name="row")
    assert run_dir_for(b).as_posix() == f"/x/row-{run_id(run_identity(b))}/seed{b.seed}"


def test_settings_leave_out_what_a_phase_ignores():
    # a gradient-method phase takes one batch of every task: its sampler changes nothing, nor GradVac's beta
    # under PCGrad, nor SMART's step rule with SMART off
    a = RunConfig(gradient_method="pcgrad")
    for change in (
        {"sampler": "random"},
        {"gradvac_beta": 0.5},
        {"smart_step_rule": "paper"},
        {"compromise_k": 8},
        {"head_size": 256},
        {"pal_heads": 4},
        {"head_lr": a.lr},
    ):
        assert a.replace(**change).settings_hash() == a.settings_hash(), change
    assert a.replace(gradient_method="gradvac").settings_hash() != a.settings_hash()
    single = RunConfig()  # ... but a single-task phase's sampler does
    assert single.replace(sampler="random").settings_hash() != single.settings_hash()
    # per phase: the pretrain phase's sampler counts, the gradient-method phase's does not
    two = RunConfig(
        phases=[{"name": "pretrain", "freeze": "encoder"}, {"name": "finetune", "gradient_method": "pcgrad"}]
    )
    assert two.replace(sampler="random").settings_hash() != two.settings_hash()
    bumped = two.replace(
        phases=[
            {"name": "pretrain", "freeze": "encoder"},
            {"name": "finetune", "gradient_method": "pcgrad", "sampler": "random"},
        ]
    )
    assert bumped.settings_hash() == two.settings_hash()


def test_run_id_covers_data_and_precision(tmp_path, small_data_dir):
    import shutil

    cfg = RunConfig(data_dir=str(small_data_dir), predict_test=False)
    moved = tmp_path / "copy"
    shutil.copytree(small_data_dir, moved)
    same = cfg.replace(data_dir=str(moved))  # the same files elsewhere: the same run
    assert run_id(run_identity(same)) == run_id(run_identity(cfg))
    (moved / "sts-dev.csv").write_text((moved / "sts-dev.csv").read_text() + "x\ty z\tw v\t1.0\n")
    assert run_id(run_identity(same)) != run_id(run_identity(cfg))  # other data: another run
    assert run_identity(cfg.replace(precision="bf16"))["precision"] == "bf16"
    assert run_id(run_identity(cfg.replace(precision="bf16"))) != run_id(run_identity(cfg.replace(precision="fp32")))


def test_config_is_frozen():
    cfg = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0
    with pytest.raises(TypeError):
        cfg.batch_size["sst"] = 1
    with pytest.raises(AttributeError):
        cfg.tasks.append("nli")


def test_phase_configs_apply_overrides():
    cfg = RunConfig(
        lr=1e-5,
        epochs=5,
        phases=[
            {"name": "pretrain", "freeze": "encoder", "lr": 1e-3, "epochs": 1},
            {"name": "finetune", "gradient_method": "pcgrad"},
        ],
    )
    pre, fine = cfg.phase_configs()
    assert (pre.freeze, pre.lr, pre.epochs, pre.gradient_method) == ("encoder", 1e-3, 1, "none")
    assert (fine.freeze, fine.lr, fine.epochs, fine.gradient_method) == ("none", 1e-5, 5, "pcgrad")
    assert pre.phases == () and fine.phases == ()
    assert pre.name == cfg.name  # the phase name is not the run name
    assert RunConfig().phase_configs() == [RunConfig()]


def test_phase_illegal_key_or_value_errors():
    with pytest.raises(ValueError) as err:
        RunConfig(phases=[{"name": "p", "pair_mode": "concat_embed"}])
    assert "phases[0]" in str(err.value) and "'pair_mode'" in str(err.value) and "allowed" in str(err.value)
    assert "freeze" in str(err.value)
    with pytest.raises(ValueError, match="'epochs'"):
        RunConfig(phases=[{"epochs": "two"}])
    with pytest.raises(ValueError, match="phases"):
        RunConfig(phases=["pretrain"])
    assert {"lr", "freeze", "epochs", "gradient_method"} <= PHASE_KEYS


def test_phase_combinations_checked_at_construction():
    # a phase that cannot work fails when the config is built, not hours later when the phase starts
    with pytest.raises(ValueError, match="all_but_pals"):
        RunConfig(phases=[{"name": "pal_only", "freeze": "all_but_pals"}])
    with pytest.raises(ValueError, match="compromise"):
        RunConfig(phases=[{"compromise": True}])
    RunConfig(pals=True, phases=[{"name": "pal_only", "freeze": "all_but_pals"}])


def test_combinations():
    with pytest.raises(ValueError, match="concat_sentences"):
        RunConfig(head="rnn", pair_mode="concat_embed")
    RunConfig(head="rnn", pair_mode="concat_sentences")
    with pytest.raises(ValueError, match="pals: true"):
        RunConfig(freeze="all_but_pals")
    RunConfig(freeze="all_but_pals", pals=True)
    with pytest.raises(ValueError, match="pal_size"):
        RunConfig(pals=True, pal_size=130, pal_heads=12)
    with pytest.raises(ValueError, match="compromise"):
        RunConfig(compromise=True, gradient_method="none")
    with pytest.raises(ValueError, match="compromise_k"):
        RunConfig(compromise=True, gradient_method="gradvac", compromise_k=2)
    with pytest.raises(ValueError, match="tasks"):
        RunConfig(tasks=["sst", "nli"])
    with pytest.raises(ValueError, match="batch_size"):
        RunConfig(batch_size={"sst": 8})
    with pytest.raises(ValueError, match="'epochs'"):
        RunConfig(epochs=0)
    RunConfig(tasks=["sts"], batch_size={"sts": 4})


def test_parse_override():
    assert parse_override("epochs=3") == ("epochs", 3)
    assert parse_override("lr=1.0e-4") == ("lr", 1e-4)
    assert parse_override("out_dir=/tmp/a=b") == ("out_dir", "/tmp/a=b")
    assert parse_override("data_dir=null") == ("data_dir", None)
    assert parse_override(" tasks =[sst, sts]") == ("tasks", ["sst", "sts"])
    assert parse_override("batch_size={sst: 4, para: 4, sts: 4}")[1] == {"sst": 4, "para": 4, "sts": 4}
    with pytest.raises(ValueError, match="key=value"):
        parse_override("epochs")
    with pytest.raises(ValueError) as err:
        parse_override("epoch=3")
    assert "'epoch'" in str(err.value) and "epochs" in str(err.value)


def test_load_profile():
    smoke = load_profile("smoke")
    assert smoke["backbone"] == "tiny-random" and smoke["seeds"] == [11711]
    with pytest.raises(ValueError) as err:
        load_profile("nonesuch")
    msg = str(err.value)
    assert "'nonesuch'" in msg and "smoke" in msg and "quick" in msg


def test_load_profile_checks_keys(tmp_path):
    bad = write_yaml(tmp_path, {"epochz": 1}, "bad.yaml")
    with pytest.raises(ValueError, match="'epochz'"):
        load_profile(bad)
    with pytest.raises(ValueError, match="seeds"):
        load_profile(write_yaml(tmp_path, {"seeds": 3}, "seeds.yaml"))
    with pytest.raises(ValueError, match="phase_overrides"):
        load_profile(write_yaml(tmp_path, {"phase_overrides": {"pretrain": {"backbone": "x"}}}, "po.yaml"))


def test_field_types_is_cached():
    assert field_types() is field_types()
