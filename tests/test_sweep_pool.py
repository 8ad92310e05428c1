"""The local engine on worker processes (mtlib.runs.pool) against the local engine in one process.

One sweep on 2 workers: base, gradvac and advanced_pal_finetune (whose parent advanced must finish first) end
with the run directories and metrics the sequential engine gives them; a run with a bad config fails in one
line and the others finish; its child fails unstarted. A second sweep has a worker SIGKILLed mid-run: its run
is reported failed with the exit code, and a third sweep resumes it from last.pt to the sequential metrics.
"""

from __future__ import annotations

import os
import signal
import tempfile

import pytest

from mtlib.cli import main
from mtlib.rundir import read_config, read_metrics
from mtlib.runs.executor import Run
from mtlib.runs.plan import plan
from mtlib.runs.pool import check_workers, default_workers, threads_per_worker
from mtlib.runs.sweep import run_sweep

ROWS, SEEDS = ["base", "gradvac", "advanced_pal_finetune"], [1]


def _kw(tmp, data_dir, name, **more):
    # threads unset: the engine picks cores // workers (the smoke profile's own threads: 1 would hide that)
    return {
        "out_dir": str(tmp / name),
        "data_dir": str(data_dir),
        "max_train_examples": 32,
        "progress": False,
        "threads": None,
        **more,
    }


@pytest.fixture(scope="module", autouse=True)
def worker_logs_in_tmp(tmp_path_factory):
    """The worker logs a sweep with failures keeps (by design) go to pytest's folder, not /tmp."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("logs")))
        yield


@pytest.fixture(scope="module")
def sweeps(small_data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pool")
    local = run_sweep(plan("smoke", ROWS, SEEDS, **_kw(tmp, small_data_dir, "local", threads=1)), show=False)
    runs = plan("smoke", ROWS, SEEDS, **_kw(tmp, small_data_dir, "pool"))
    bad = plan(
        "smoke", ["base"], [5], init_checkpoint=str(tmp / "missing" / "best.pt"), **_kw(tmp, small_data_dir, "pool")
    )[0]
    runs += [bad, Run("child of bad", runs[0].cfg, [bad.key])]
    order: list[tuple[str, str]] = []

    def on_event(event):
        for r in runs:
            if not order or (r.key, r.state) not in order:
                order.append((r.key, r.state))

    pool = run_sweep(runs, workers=2, listeners=[on_event], show=False)
    return tmp, local, pool, order


def test_workers_end_with_the_sequential_runs_and_metrics(sweeps):
    tmp, local, pool, _ = sweeps
    for key, ref in local.runs.items():
        got = pool.runs[key]
        assert ref.state == got.state == "done", (got.state, got.error)
        assert os.path.relpath(ref.run_dir, tmp / "local") == os.path.relpath(got.run_dir, tmp / "pool")
        a, b = read_metrics(ref.run_dir), read_metrics(got.run_dir)
        assert a["run_id"] == b["run_id"] and a["examples_seen"] == b["examples_seen"]
        assert b["dev"] == pytest.approx(a["dev"], abs=1e-6)
        assert read_config(got.run_dir)["threads"] == threads_per_worker(2)  # the engine's choice, not identity


def test_parents_finish_before_their_children_start(sweeps):
    _, _, _, order = sweeps
    assert order.index(("advanced seed1", "done")) < order.index(("advanced_pal_finetune seed1", "running"))


def test_a_failing_run_is_reported_and_the_others_finish(sweeps):
    _, _, pool, _ = sweeps
    bad, child = pool.runs["base seed5"], pool.runs["child of bad"]
    assert bad.state == "failed" and "init_checkpoint" in bad.error and "\n" not in bad.error
    assert child.state == "failed" and child.attempts == 0 and "parent base seed5 failed" in child.error
    assert pool.counts() == {"pending": 0, "running": 0, "done": 4, "failed": 2}


def test_a_killed_worker_fails_its_run_and_the_next_sweep_resumes_it(sweeps, small_data_dir):
    tmp, local, _, _ = sweeps
    # still training when the kill lands; one thread in both sweeps: runs at other thread counts differ in the
    # last digits (oneDNN splits reductions by thread), which is not what this test is about
    kw = _kw(tmp, small_data_dir, "killed", batches_per_epoch=40, threads=1)
    seen = {}

    runs = plan("smoke", ["base"], SEEDS, **kw)

    def kill_once(event):
        (r,) = runs
        if r.state == "running" and r.progress and "pid" not in seen:  # after its first epoch's checkpoint
            seen["pid"] = r.pid
            os.kill(r.pid, signal.SIGKILL)

    first = run_sweep(runs, workers=1, listeners=[kill_once], show=False)
    (lost,) = first.failed
    assert "exited with code -9" in lost.error and "resume" in lost.error
    again = run_sweep(plan("smoke", ["base"], SEEDS, **kw), workers=1, show=False)
    done = again.runs["base seed1"]
    assert done.state == "done" and read_metrics(done.run_dir)["resumed"]
    whole = run_sweep(
        plan("smoke", ["base"], SEEDS, **_kw(tmp, small_data_dir, "whole", batches_per_epoch=40, threads=1)), show=False
    )
    assert read_metrics(done.run_dir)["dev"] == pytest.approx(
        read_metrics(whole.runs["base seed1"].run_dir)["dev"], abs=1e-6
    )


@pytest.mark.parametrize("value", [0, -2, "0", "two", 1.5, True, None, ""])
def test_workers_must_be_a_whole_number_of_one_or_more(value):
    with pytest.raises(ValueError, match=r"^workers: got .*; expected a whole number of worker processes, 1 or more$"):
        check_workers(value)
    assert check_workers("3") == check_workers(3) == 3


def test_a_bad_workers_value_is_one_error_line_before_anything_runs(tmp_path, capsys):
    assert main(["sweep", "--profile", "smoke", "--rows", "base", "--out", str(tmp_path), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "error: workers: got '0'; expected a whole number of worker processes, 1 or more"
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="only the local engine"):
        run_sweep([], "ray", workers=2)


def test_default_workers_by_cores_on_a_cpu_and_by_memory_and_cores_on_a_gpu(monkeypatch):
    import torch

    from mtlib.machine import runtime

    assert [default_workers("cpu", cores=c) for c in (1, 2, 3, 16)] == [1, 2, 3, 4]
    assert threads_per_worker(2, cores=2) == 1 and threads_per_worker(4, cores=16) == 4
    assert threads_per_worker(3, cores=2) == 1
    monkeypatch.setattr(runtime, "resolve_device", lambda name: torch.device("cuda"))
    # a 16 GB card on 2 cores (a notebook service), a 40 GB one, an 80 GB H100 on 16 cores, 141 GB on 64
    assert [default_workers("auto", cores=c, gpu_gb=g) for c, g in ((2, 15.9), (8, 40), (16, 79.2), (64, 141))] == [
        1,
        4,
        7,
        8,
    ]
    assert default_workers("auto", cores=4, gpu_gb=141) == 2


def test_runs_start_longest_first_and_a_phase_in_training_is_not_trained_beside_it(smoke_cfg):
    from mtlib.runs.executor import order, planned_updates
    from mtlib.train import shared_phases

    pretrain = {"name": "pretrain", "freeze": "encoder", "lr": 1e-3}
    one = Run("one seed1", smoke_cfg.replace(name="one"), [])
    two_a = Run("a seed1", smoke_cfg.replace(name="a", phases=[pretrain, {"name": "finetune"}]), [])
    two_b = Run("b seed1", smoke_cfg.replace(name="b", phases=[pretrain, {"name": "finetune", "lr": 3e-4}]), [])
    short = Run("short seed1", smoke_cfg.replace(name="short", epochs=1), [])
    assert planned_updates(two_a.cfg) > planned_updates(one.cfg) > planned_updates(short.cfg)
    keys: dict = {}
    assert order([short, one, two_a, two_b], [], keys) == [two_a, two_b, one, short]
    # a is training the pretrain phase b starts with: b waits behind the others until a hands over
    assert order([short, one, two_b], [two_a], keys) == [one, short, two_b]
    state = shared_phases.state_path(two_a.cfg, keys["a seed1"])
    state.parent.mkdir(parents=True)
    state.write_bytes(b"handed over")
    assert order([short, one, two_b], [two_a], keys) == [two_b, one, short]


def test_a_pool_trains_a_shared_first_phase_once(small_data_dir, tmp_path):
    """pcgrad, gradvac and sum_all begin with the same pretraining: on worker processes too, one of them trains
    it and the other two adopt its hand-over (the order that keeps two from training it side by side:
    test_runs_start_longest_first_and_a_phase_in_training_is_not_trained_beside_it)."""
    kw = _kw(tmp_path, small_data_dir, "pool", batches_per_epoch=20)
    # the three plan 3 + 2 x 20 updates, base 2 x 20: they come first, and base outlasts the first one's
    # 3-update pretraining, so the second worker must take base while it trains
    runs = plan("smoke", ["pcgrad", "gradvac", "sum_all", "base"], [1], **kw)
    pool = run_sweep(runs, workers=2, show=False)
    shared = {k: read_metrics(r.run_dir)["shared_phases"] for k, r in pool.runs.items()}
    assert shared["base seed1"] is None
    trained = [k for k in ("pcgrad seed1", "gradvac seed1", "sum_all seed1") if shared[k] is None]
    assert len(trained) == 1, shared
