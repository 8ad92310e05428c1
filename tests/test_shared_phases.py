"""Leading phases shared between runs (mtlib.train.shared_phases): a run that adopts another run's hand-over
ends exactly as it would have after training those phases itself; other phases, damaged states and N-process
runs are not adopted."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mtlib.rundir import load_checkpoint, read_history
from mtlib.experiments.resolve import resolve_config
from mtlib.train import shared_phases
from mtlib.train.trainer import run

PRETRAIN = {"name": "pretrain", "freeze": "encoder", "lr": 1e-3}


def cfg(data_dir: Path, out: Path, name: str, finetune: dict, pretrain: dict | None = None):
    return resolve_config(
        "smoke",
        out_dir=str(out / "runs"),
        data_dir=str(data_dir),
        max_train_examples=32,
        progress=False,
        threads=1,
        hidden_dropout=0.3,
        name=name,
        phases=[{**PRETRAIN, **(pretrain or {})}, {"name": "finetune", "batches_per_epoch": 4, **finetune}],
    )


def metrics(run_dir: Path) -> dict:
    skip = {"train_seconds", "final_eval_seconds", "speed", "shared_phases"}
    return {k: v for k, v in json.loads((run_dir / "metrics.json").read_text()).items() if k not in skip}


def assert_same(got: Path, want: Path) -> None:
    assert metrics(got) == metrics(want)
    assert [{k: v for k, v in r.items() if k != "wall"} for r in read_history(got)] == [
        {k: v for k, v in r.items() if k != "wall"} for r in read_history(want)
    ]
    a, b = (load_checkpoint(d / "best.pt")["model"] for d in (got, want))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in b)
    for p in (want / "predictions").iterdir():
        assert (got / "predictions" / p.name).read_bytes() == p.read_bytes(), p.name
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in want.iterdir())  # no leftovers


def test_a_run_adopting_anothers_pretrain_ends_as_if_it_had_trained_it(small_data_dir, tmp_path, capsys):
    pcgrad = {"gradient_method": "pcgrad"}
    alone = run(cfg(small_data_dir, tmp_path / "alone", "b", pcgrad))
    first = run(cfg(small_data_dir, tmp_path / "shared", "a", {"lr": 3e-4}))
    b = cfg(small_data_dir, tmp_path / "shared", "b", pcgrad)
    b = b.replace(progress=True)
    adopted = run(b)
    assert "pretrain: trained once by " in capsys.readouterr().out
    shared = json.loads((adopted / "metrics.json").read_text())["shared_phases"]
    assert shared["phases"] == ["pretrain"] and shared["from"] == f"runs/{first.parent.name}/{first.name}"
    assert json.loads((alone / "metrics.json").read_text())["shared_phases"] is None
    assert_same(adopted, alone)
    # a row whose first phase differs trains its own
    other = run(cfg(small_data_dir, tmp_path / "shared", "c", pcgrad, pretrain={"lr": 5e-4}))
    assert json.loads((other / "metrics.json").read_text())["shared_phases"] is None
    assert len(list((tmp_path / "shared" / "cache" / "phases").glob("*.pt"))) == 2


def test_a_damaged_state_is_said_and_the_phases_are_trained(small_data_dir, tmp_path, capsys):
    alone = run(cfg(small_data_dir, tmp_path / "alone", "b", {}))
    run(cfg(small_data_dir, tmp_path / "shared", "a", {"lr": 3e-4}))
    (state,) = (tmp_path / "shared" / "cache" / "phases").glob("*.pt")
    state.write_bytes(state.read_bytes()[:1000])
    got = run(cfg(small_data_dir, tmp_path / "shared", "b", {}))
    assert f"not using a shared phase state: checkpoint {state} is damaged" in capsys.readouterr().out
    assert json.loads((got / "metrics.json").read_text())["shared_phases"] is None
    assert_same(got, alone)


def test_a_state_whose_run_is_gone_is_not_adopted(small_data_dir, tmp_path, capsys):
    import shutil

    first = run(cfg(small_data_dir, tmp_path, "a", {"lr": 3e-4}))
    shutil.rmtree(first.parent)  # deleted to be trained again, e.g. after a change in the code
    got = run(cfg(small_data_dir, tmp_path, "b", {}))
    assert f"came from {first}, which is gone" in capsys.readouterr().out
    assert json.loads((got / "metrics.json").read_text())["shared_phases"] is None


def test_the_key_covers_the_phases_done_and_the_seed_not_the_later_phases():
    identity = {
        "settings": {"lr": 1, "phases": [{"lr": 1}, {"lr": 2}]},
        "data": {},
        "device_type": "cpu",
        "precision": "fp32",
    }
    later = {**identity, "settings": {"lr": 1, "phases": [{"lr": 1}, {"lr": 3}]}}
    key = shared_phases.phases_key(identity, 1, 1)
    assert shared_phases.phases_key(later, 1, 1) == key
    assert shared_phases.phases_key(later, 1, 2) != shared_phases.phases_key(identity, 1, 2)
    assert shared_phases.phases_key(identity, 2, 1) != key
    first = {**identity, "settings": {"lr": 1, "phases": [{"lr": 5}, {"lr": 2}]}}
    assert shared_phases.phases_key(first, 1, 1) != key
