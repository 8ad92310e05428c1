"""Sweeps (mtlib.runs.sweep): a local Ray cluster (2 CPUs, 127.0.0.1, no dashboard) against the local engine.

One Ray sweep of five runs: four ``smoke`` runs (base and gradvac x two seeds) must end with exactly the
metrics the local engine gives them; one of them has its worker SIGKILLed mid-run (after its first epoch's
checkpoint) and must be retried, resume from last.pt and still match; a fifth run with a bad config
(a missing init_checkpoint) fails once, is not retried, and the others finish.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from mtlib.cli import main
from mtlib.rundir import read_metrics
from mtlib.rundir.files import LOCK
from mtlib.runs.plan import plan
from mtlib.runs.ray_engine import check_shared_folder
from mtlib.runs.sweep import run_sweep
from mtlib.train.identity import run_dir_for

pytest.importorskip("ray")  # the cluster extra: make setup installs it

ROWS, SEEDS = ["base", "gradvac"], [1, 2]
KILLED = "gradvac seed1"


def _kw(tmp, data_dir, name):
    # each engine's runs in a folder of their own, with their own cache: a Ray run that adopted the local
    # run's pretraining (mtlib.train.shared_phases) could finish before the kill lands
    return dict(
        out_dir=str(tmp / name / "runs"), data_dir=str(data_dir), max_train_examples=32, progress=False, threads=1
    )


def _runs(tmp, data_dir, name):
    """ROWS x SEEDS; the run to be killed trains 300 batches per epoch instead of 6, so that it is still training
    when the kill lands (the driver sees progress up to 0.5 s late; a 6-batch smoke run can finish by then,
    and so could a 40-batch one once the encoder was unpadded: the "retry" then only finds the finished run)."""
    kw = _kw(tmp, data_dir, name)
    runs = [r for r in plan("smoke", ROWS, SEEDS, **kw) if r.key != KILLED]
    row, seed = KILLED.split(" seed")
    return runs + plan("smoke", [row], [int(seed)], batches_per_epoch=300, **kw)


@pytest.fixture(scope="module")
def sweeps(small_data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    local = run_sweep(_runs(tmp, small_data_dir, "local"), "local", show=False)
    runs = _runs(tmp, small_data_dir, "ray")
    runs += plan(
        "smoke", ["base"], [5], init_checkpoint=str(tmp / "missing" / "best.pt"), **_kw(tmp, small_data_dir, "ray")
    )
    seen = {"killed": None, "address": None}
    watcher = threading.Thread(target=_kill_mid_run, args=(next(r for r in runs if r.key == KILLED), seen))
    watcher.daemon = True
    watcher.start()

    def on_event(event):
        import ray

        seen["address"] = seen["address"] or ray.nodes()[0]["NodeManagerAddress"]

    ray_sweep = run_sweep(runs, "ray", num_cpus=2, max_retries=2, listeners=[on_event])
    return local, ray_sweep, seen


def _kill_mid_run(run, seen: dict, timeout: float = 600) -> None:
    """SIGKILL the worker training ``run`` once the driver has seen it start and it has begun its finetuning
    phase's second epoch (so its last.pt holds the first), before it ends. The progress is watched on the run
    directory itself, not through the driver's events: those reach the driver up to a drain late, and a short
    run could be over by then."""
    run_dir = run_dir_for(run.cfg)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rows = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines() if x.strip()]
            holder = (run_dir / LOCK).read_text().split()
        except (OSError, ValueError):
            rows, holder = [], []
        second = any(r.get("type") == "train" and r.get("phase") == 1 and r.get("epoch") == 2 for r in rows)
        if second and run.attempts == 1 and holder[:1] == ["pid"]:
            seen["killed"] = int(holder[1])
            os.kill(seen["killed"], signal.SIGKILL)  # the worker process, mid-run
            return
        time.sleep(0.02)


def test_ray_runs_end_with_the_local_engines_metrics(sweeps):
    local, ray_sweep, seen = sweeps
    assert seen["address"] == "127.0.0.1"  # the local cluster is not reachable from elsewhere
    for key, ref in local.runs.items():
        got = ray_sweep.runs[key]
        assert ref.state == got.state == "done", (got.state, got.error)
        a, b = read_metrics(ref.run_dir), read_metrics(got.run_dir)
        assert a["dev"] == b["dev"] and a["examples_seen"] == b["examples_seen"] and a["run_id"] == b["run_id"]


def test_a_killed_worker_is_retried_and_resumes_from_last_pt(sweeps):
    local, ray_sweep, seen = sweeps
    r = ray_sweep.runs[KILLED]
    assert seen["killed"] is not None and r.attempts == 2 and r.state == "done"
    assert read_metrics(r.run_dir)["resumed"], "the retry should resume from last.pt"
    assert read_metrics(r.run_dir)["dev"] == read_metrics(local.runs[KILLED].run_dir)["dev"]
    assert all(x.attempts == 1 for k, x in ray_sweep.runs.items() if k != KILLED)


def test_a_bad_config_fails_once_and_the_others_finish(sweeps):
    _, ray_sweep, _ = sweeps
    (bad,) = ray_sweep.failed
    assert bad.key == "base seed5" and bad.attempts == 1 and "init_checkpoint" in bad.error
    assert ray_sweep.counts() == {"pending": 0, "running": 0, "done": 4, "failed": 1}
    assert "1 failed of 5" in ray_sweep.summary()
    table = ray_sweep.table()
    assert list(table["state"]).count("done") == 4


def test_cli_exit_status_is_nonzero_when_a_run_fails(small_data_dir, tmp_path, capsys):
    args = [
        "sweep",
        "--profile",
        "smoke",
        "--rows",
        "base",
        "--seeds",
        "7",
        "--out",
        str(tmp_path),
        "--set",
        f"data_dir={small_data_dir}",
        "--set",
        "max_train_examples=32",
        "--set",
        "progress=false",
        "--set",
        f"init_checkpoint={tmp_path / 'nowhere.pt'}",
    ]
    assert main(args) == 1
    assert "base seed7" in capsys.readouterr().err


def test_the_output_folder_must_be_shared_and_absolute(tmp_path):
    with pytest.raises(ValueError, match="absolute"):
        check_shared_folder(tmp_path.relative_to(tmp_path.parent), [], lambda paths: [])
    with pytest.raises(ValueError, match="does not see the sweep output folder"):
        check_shared_folder(tmp_path, [], lambda paths: [{"node": "n2", "seen": {p: None for p in paths}}])
    data = tmp_path / "d.csv"
    with pytest.raises(ValueError, match="does not see the data file"):
        check_shared_folder(
            tmp_path / "out",
            [data],
            lambda paths: [
                {"node": "n2", "seen": {p: (open(p).read() if ".sweep-probe-" in p else None) for p in paths}}
            ],
        )


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch):
    import sys

    from mtlib.runs.ray_engine import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ValueError, match=r"pip install -e '\.\[cluster\]'"):
        import_ray(local=True)


def test_parents_are_planned_first_and_a_failed_parent_fails_its_children(small_data_dir, tmp_path):
    from mtlib.runs.executor import Run

    runs = plan("smoke", ["advanced_pal_finetune"], [3], **_kw(tmp_path, small_data_dir, "plan"))
    assert [r.key for r in runs] == ["advanced seed3", "advanced_pal_finetune seed3"]
    assert runs[1].parents == ["advanced seed3"]
    assert runs[1].cfg.init_checkpoint.endswith("best.pt") and "advanced-" in runs[1].cfg.init_checkpoint
    bad = plan("smoke", ["base"], [3], init_checkpoint=str(tmp_path / "no.pt"), **_kw(tmp_path, small_data_dir, "p"))[0]
    child = Run("child", runs[0].cfg, [bad.key])
    sweep = run_sweep([bad, child], "local", show=False)
    assert sweep.runs["child"].state == "failed" and sweep.runs["child"].attempts == 0
    assert "parent base seed3 failed" in sweep.runs["child"].error
