"""Loss weighting (uncertainty, DWA, FAMO): the rules of each paper on hand-made losses, the config's
combinations, a smoke run of each with a gradient method, and a kill-and-resume that stays exact."""

import math
import signal

import pytest
import torch

from mtlib.config.run_config import RunConfig
from mtlib.config.types import ConfigError
from mtlib.rundir import read_history
from mtlib.train.identity import run_dir_for
from mtlib.methods.loss_weighting import FAMO, DynamicWeightAverage, UncertaintyWeighting, make_loss_weighting

TASKS = ["sst", "para", "sts"]


def test_uncertainty_learns_the_log_variance_of_each_loss():
    w = UncertaintyWeighting(TASKS, lr=0.05)
    for _ in range(400):  # the optimum of exp(-s) L + s is s = log L
        w.update({"sst": 4.0, "para": 1.0, "sts": 0.25}, dict.fromkeys(TASKS, 1), 1)
    assert [round(math.log(1 / w.scale(t, 0.0)), 1) for t in TASKS] == [round(math.log(x), 1) for x in (4, 1, 0.25)]
    w.update({"sst": 4.0}, {"sst": 1}, 1)  # a single-task step moves only its own task's weight
    assert w.weigh("sst", torch.tensor(2.0), 2.0) == pytest.approx(2.0 * w.scale("sst", 2.0))


def test_dwa_weights_follow_the_ratio_of_the_last_two_epochs():
    w = DynamicWeightAverage(TASKS, temperature=2.0)
    epochs = [{"sst": 2.0, "para": 1.0, "sts": 1.0}, {"sst": 1.0, "para": 1.0, "sts": 2.0}]
    for epoch, losses in enumerate(epochs, 1):
        for _ in range(3):
            w.update(losses, dict.fromkeys(TASKS, 1), epoch)
        assert w.weights() == dict.fromkeys(TASKS, 1.0)  # weights 1 for the first two epochs
    w.update(epochs[1], dict.fromkeys(TASKS, 1), 3)
    ratios = [0.5, 1.0, 2.0]
    expected = [3 * math.exp(r / 2) / sum(math.exp(x / 2) for x in ratios) for r in ratios]
    assert [w.weights()[t] for t in TASKS] == pytest.approx(expected)
    assert sum(w.weights().values()) == pytest.approx(3.0)


def test_famo_raises_the_weight_of_the_task_that_improves_least():
    w = FAMO(TASKS, lr=0.025)
    assert w.scale("sst", 3.0) == 1.0  # first update: the plain sum
    for step in range(50):  # sst stalls, para and sts fall
        w.update({"sst": 1.0, "para": 1.0 * 0.97**step, "sts": 1.0 * 0.95**step}, dict.fromkeys(TASKS, 1), 1)
    z = w.weights()
    assert z["sst"] > 2 * max(z["para"], z["sts"]) and sum(z.values()) == pytest.approx(1.0)
    # the multiplier z_t / (c L_t) makes the gradient that of z_t log L_t / c
    assert w.scale("para", 0.5) == pytest.approx(z["para"] / (w.c * 0.5), rel=1e-6)


@pytest.mark.parametrize("cls", [UncertaintyWeighting, DynamicWeightAverage, FAMO])
def test_state_round_trip_continues_identically(cls):
    a, b = cls(TASKS), cls(TASKS)
    losses = [{"sst": 1.0 + 0.1 * i, "para": 2.0 / (i + 1), "sts": 0.5} for i in range(6)]
    for i, loss in enumerate(losses[:3]):
        a.update(loss, dict.fromkeys(TASKS, 1), 1 + i // 2)
    b.load_state_dict(a.state_dict())
    for i, loss in enumerate(losses[3:], 3):
        a.update(loss, dict.fromkeys(TASKS, 1), 1 + i // 2)
        b.update(loss, dict.fromkeys(TASKS, 1), 1 + i // 2)
        assert [a.scale(t, 0.7) for t in TASKS] == [b.scale(t, 0.7) for t in TASKS]


def test_config_refuses_what_cannot_work_in_one_line():
    with pytest.raises(ConfigError, match="loss_weighting.*Gramian aggregator"):
        RunConfig(gradient_method="upgrad", loss_weighting="uncertainty")
    with pytest.raises(ConfigError, match="loss_weighting.*single-task steps"):
        RunConfig(loss_weighting="famo")
    with pytest.raises(ConfigError, match="loss_weighting.*compromise"):
        RunConfig(gradient_method="gradvac", compromise=True, loss_weighting="famo")
    with pytest.raises(ConfigError, match="dwa_temperature"):
        RunConfig(loss_weighting="dwa", dwa_temperature=0)
    assert make_loss_weighting(RunConfig(loss_weighting="dwa", sampler="round_robin")).name == "dwa"
    # a run without loss weighting keeps its identity: none of the new keys enter its settings
    assert "loss_weighting" not in RunConfig().settings()["phases"][0]
    assert RunConfig(loss_weighting_lr=0.5).settings_hash() == RunConfig().settings_hash()


def test_loss_weighting_runs_with_every_step_kind(smoke_cfg):
    from mtlib.train.trainer import run

    for gm, lw in (("sum", "famo"), ("pcgrad", "uncertainty"), ("none", "dwa")):
        run_dir = run(smoke_cfg.replace(name=f"lw-{lw}", gradient_method=gm, loss_weighting=lw))
        grads = [r for r in read_history(run_dir) if r["type"] == "grad"]
        if gm != "none":
            assert grads and all(set(r["loss_weights"]) == set(TASKS) for r in grads)
            assert any(r["loss_weights"] != dict.fromkeys(TASKS, 1.0) for r in grads)
        assert (run_dir / "metrics.json").is_file()


@pytest.mark.parametrize("lw,fault", [("famo", "step:3"), ("uncertainty", "epoch_end:1")])
def test_kill_and_resume_with_loss_weighting_is_identical(lw, fault, small_data_dir, tmp_path):
    from test_faults import assert_same_run, make_cfg, train_in_child

    ref = make_cfg(small_data_dir, tmp_path / "ref", "single", gradient_method="sum", loss_weighting=lw)
    assert train_in_child(ref) == 0
    cfg = make_cfg(small_data_dir, tmp_path / "runs", "single", gradient_method="sum", loss_weighting=lw)
    assert train_in_child(cfg, fault) == -signal.SIGKILL
    assert (run_dir_for(cfg) / "last.pt").exists()
    assert train_in_child(cfg) == 0
    assert_same_run(run_dir_for(cfg), run_dir_for(ref))
