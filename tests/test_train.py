"""mtlib.train.trainer on the smoke profile (tiny-random, fp32, a small copy of the data): learning, run directory,
no overwrite, exact resume, phases and freezing, gradient methods, SMART, PALs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mtlib import tasks
from mtlib.data.metrics import read_predictions
from mtlib.rundir import load_checkpoint, read_history
from mtlib.train.identity import run_dir_for, run_id, run_identity
from mtlib.machine.runtime import resolve_precision
from mtlib.train.trainer import Trainer, run


class Interrupt(Exception):
    pass


def rows(run_dir, kind=None):
    history = read_history(run_dir)
    return [r for r in history if kind is None or r["type"] == kind]


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def phase_states(monkeypatch):
    """Records the model's state before and after every phase: [(before, after), ...]."""
    states = []
    original = Trainer._run_phase

    def wrapped(self, pi, pcfg, ckpt):
        before = snapshot(self.model)
        original(self, pi, pcfg, ckpt)
        states.append((before, snapshot(self.model)))

    monkeypatch.setattr(Trainer, "_run_phase", wrapped)
    return states


def test_training_lowers_the_loss(smoke_cfg):
    # 8 fixed examples per task, a high learning rate: the model memorises them
    cfg = smoke_cfg.replace(
        max_train_examples=8,
        lr=1e-3,
        sampler="round_robin",
        epochs=1,
        batches_per_epoch=36,
        log_every=6,
        hidden_dropout=0.0,
    )
    run_dir = run(cfg)
    train = rows(run_dir, "train")
    assert [r["step"] for r in train] == [6, 12, 18, 24, 30, 36]
    first, last = train[0]["loss"], train[-1]["loss"]
    assert set(first) == set(last) == {"sst", "para", "sts"}
    for task in first:  # every task learns (SST's 5 classes are slowest) ...
        assert last[task] < 0.9 * first[task], (task, first[task], last[task])
    assert sum(last.values()) < 0.6 * sum(first.values())  # ... and the total falls a lot
    assert train[-1]["examples_seen"] == 36 * 8


def test_run_directory_contents_and_no_overwrite(smoke_cfg, small_data_dir):
    cfg = smoke_cfg.replace(predict_test=True)
    run_dir = run(cfg)
    assert run_dir == run_dir_for(cfg) and run_dir.parent.name == f"{cfg.name}-{run_id(run_identity(cfg))}"
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "history.jsonl", "metrics.json", "best.pt", "predictions"} <= names
    assert "last.pt" not in names  # removed once finished
    from mtlib.experiments.resolve import resolve_config

    assert resolve_config(run_dir / "config.yaml") == cfg

    history = rows(run_dir)
    assert history[0]["type"] == "start" and history[-1]["type"] == "final"
    assert history[0]["config_hash"] == cfg.settings_hash()
    evals = [r for r in history if r["type"] == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2]
    assert all(sum(r["task_counts"].values()) == cfg.batches_per_epoch for r in evals)
    assert all(math.isclose(sum(r["probabilities"].values()), 1.0) for r in evals)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["dev"]) == {"sst", "para", "sts", "mean"}
    assert metrics["dev"]["mean"] == pytest.approx(sum(metrics["dev"][t] for t in ("sst", "para", "sts")) / 3)
    assert metrics["best_epoch"] in (1, 2) and metrics["config_hash"] == cfg.settings_hash()
    assert metrics["examples_seen"] == 2 * cfg.batches_per_epoch * 8
    assert metrics["data"]["sst"]["train_used"] == 32 and metrics["data"]["sst"]["dev_subsample"] == 24
    assert history[-1]["mean"] == pytest.approx(metrics["dev"]["mean"])

    # predictions in the course format, scored back to the same numbers
    from mtlib.data import load_split
    from mtlib.data.metrics import score

    pred = run_dir / "predictions"
    for task in ("sst", "para", "sts"):
        path = pred / f"{task}-dev-output.csv"
        lines = path.read_text().splitlines()
        assert lines[0] == f"id \t {tasks.get(task).prediction_column} "
        # the final rows: the subsample of the dev selection half, as many of its report half
        assert len(lines) == 1 + 48 and all(" , " in line for line in lines[1:])
        values = list(read_predictions(path).values())
        if task == "sst":
            assert all(line.split(" , ")[1].strip().isdigit() for line in lines[1:])
        if task == "para":
            assert set(values) <= {0.0, 1.0}
        # rescored against the gold labels of the final rows, they give the metrics (dev_full: all of them)
        labels = {ex.id: ex.label for ex in load_split(task, "dev", small_data_dir)}
        predictions = read_predictions(path)
        assert score(task, list(predictions.values()), [labels[i] for i in predictions]) == pytest.approx(
            metrics["dev_full"][task]
        )
    assert (pred / "sst-test-output.csv").is_file() and (pred / "sts-test-output.csv").is_file()
    assert not (pred / "para-test-output.csv").exists()  # no Quora test file in the course data

    # a finished run is returned as it is, never retrained
    stamp = (run_dir / "metrics.json").stat().st_mtime_ns
    n_lines = len(history)
    assert run(cfg) == run_dir
    assert (run_dir / "metrics.json").stat().st_mtime_ns == stamp
    assert len(rows(run_dir)) == n_lines


RESUME_CASES = {
    # interrupted while the epoch-1 eval row is reported (after its checkpoint)
    "pal": ({"epochs": 3, "patience": 3}, lambda r: r["type"] == "eval" and r["epoch"] == 1),
    # gradient compromise in the second phase, interrupted mid-epoch
    "phases+compromise": (
        {
            "epochs": 3,
            "patience": 3,
            "compromise_k": 4,
            "batches_per_epoch": 8,
            "phases": [
                {"name": "pretrain", "freeze": "encoder", "lr": 1e-3, "epochs": 1},
                {
                    "name": "finetune",
                    "sampler": "pal_control",
                    "gradient_method": "gradvac",
                    "compromise": True,
                    "smart_weight": 0.01,
                },
            ],
        },
        lambda r: r["type"] == "grad" and r["epoch"] == 2,
    ),
}


@pytest.mark.parametrize("case", RESUME_CASES)
def test_resume_reproduces_an_uninterrupted_run(smoke_cfg, tmp_path, case):
    changes, stop_at = RESUME_CASES[case]
    cfg = smoke_cfg.replace(out_dir=str(tmp_path / "interrupted"), hidden_dropout=0.3, **changes)
    reference = run(cfg.replace(out_dir=str(tmp_path / "reference")))

    def interrupt(row):
        if stop_at(row):
            raise Interrupt

    with pytest.raises(Interrupt):
        run(cfg, callback=interrupt)
    run_dir = run_dir_for(cfg)
    assert (run_dir / "last.pt").is_file() and not (run_dir / "metrics.json").exists()
    assert run(cfg) == run_dir

    history = rows(run_dir)
    assert "resume" not in [r["type"] for r in history]  # resumes are noted in metrics.json, not in the history
    (resume,) = json.loads((run_dir / "metrics.json").read_text())["resumed"]
    assert resume["epoch"] >= 1
    key = lambda r: (r.get("phase"), r["epoch"])  # noqa: E731
    evals = [key(r) for r in history if r["type"] == "eval"]
    assert len(evals) == len(set(evals))  # no epoch is repeated
    assert evals == [key(r) for r in rows(reference, "eval")]

    def comparable(history):
        return [{k: v for k, v in r.items() if k != "wall"} for r in history if r["type"] in ("train", "eval", "grad")]

    assert comparable(rows(run_dir)) == comparable(rows(reference))
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, reference))
    assert got["dev"] == want["dev"]
    assert (got["best_epoch"], got["examples_seen"]) == (want["best_epoch"], want["examples_seen"])
    a, b = (load_checkpoint(d / "best.pt")["model"] for d in (run_dir, reference))
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_pretrain_phase_freezes_the_encoder(smoke_cfg, phase_states):
    cfg = smoke_cfg.replace(
        epochs=1, sampler="round_robin", phases=[{"name": "pretrain", "freeze": "encoder", "lr": 1e-3}]
    )
    run_dir = run(cfg)
    ((before, after),) = phase_states
    encoder = [k for k in before if k.startswith("encoder.")]
    heads = [k for k in before if k.startswith("heads.")]
    assert encoder and heads
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert all(not torch.equal(before[k], after[k]) for k in heads if k.endswith("weight"))
    assert rows(run_dir, "eval")[0]["phase_name"] == "pretrain"


def test_phases_run_in_order_and_hand_over(smoke_cfg, phase_states):
    cfg = smoke_cfg.replace(
        epochs=1,
        phases=[{"name": "pretrain", "freeze": "encoder", "lr": 1e-3}, {"name": "finetune", "batches_per_epoch": 3}],
    )
    run_dir = run(cfg)
    evals = rows(run_dir, "eval")
    assert [(r["phase"], r["phase_name"]) for r in evals] == [(0, "pretrain"), (1, "finetune")]
    assert sum(evals[1]["task_counts"].values()) == 3
    (_, after_pre), (before_fine, after_fine) = phase_states
    assert all(torch.equal(after_pre[k], before_fine[k]) for k in after_pre)  # the best of phase 0 goes on
    assert any(not torch.equal(before_fine[k], after_fine[k]) for k in before_fine if k.startswith("encoder."))


@pytest.mark.parametrize(
    "changes",
    [
        {"gradient_method": "pcgrad"},
        {"gradient_method": "gradvac", "gradvac_update": "on_fire"},
        {"gradient_method": "gradvac", "compromise": True, "sampler": "pal_control", "compromise_k": 4},
        {
            "gradient_method": "sum",
            "compromise": True,
            "compromise_combine": "force",
            "compromise_k": 4,
            "compromise_counts": "cumulative",
        },
        # two encodings per pair and SMART's embedding forward both feed the row-sparse embedding table
        {"gradient_method": "pcgrad", "pair_mode": "concat_embed", "smart_weight": 1.0},
    ],
    ids=["pcgrad", "gradvac", "compromise", "force", "concat_embed_smart"],
)
def test_gradient_methods_log_conflicts(smoke_cfg, changes):
    cfg = smoke_cfg.replace(epochs=1, batches_per_epoch=8, **changes)
    run_dir = run(cfg)
    grads = rows(run_dir, "grad")
    per_update = changes.get("compromise_k", 3) if changes.get("compromise") else 3
    assert len(grads) == 8 // per_update
    for r in grads:
        assert len(r["cosine"]) == 3 and all(len(row) == 3 for row in r["cosine"])
        assert 0.0 <= r["conflict_share"] <= 1.0
        assert set(r["pairs"]) == {"sst|para", "sst|sts", "para|sts"}
        assert sum(r["counts"].values()) == per_update and min(r["counts"].values()) >= 1
        assert all(n > 0 for n in r["norms"].values())
    ev = rows(run_dir, "eval")[0]
    assert sum(ev["task_counts"].values()) == per_update * len(grads)
    assert all(math.isfinite(v) for r in rows(run_dir, "train") for v in r["loss"].values())
    assert json.loads((run_dir / "metrics.json").read_text())["examples_seen"] == per_update * len(grads) * 8


def test_gradient_method_needs_a_trainable_encoder(smoke_cfg):
    cfg = smoke_cfg.replace(epochs=1, phases=[{"freeze": "encoder", "gradient_method": "pcgrad"}])
    with pytest.raises(ValueError, match="trainable encoder"):
        run(cfg)


def test_smart_runs(smoke_cfg):
    for pair_mode in ("concat_sentences", "concat_embed"):  # concat_embed pairs skip SMART
        cfg = smoke_cfg.replace(
            epochs=1, batches_per_epoch=4, smart_weight=1.0, sampler="round_robin", pair_mode=pair_mode
        )
        run_dir = run(cfg)
        losses = [v for r in rows(run_dir, "train") for v in r["loss"].values()]
        assert losses and all(math.isfinite(v) for v in losses)


def test_pals_train_and_all_but_pals_changes_only_pals(smoke_cfg, phase_states, tmp_path):
    base = run(smoke_cfg.replace(epochs=1, batches_per_epoch=3, name="base"))
    phase_states.clear()
    cfg = smoke_cfg.replace(
        name="pal_only",
        pals=True,
        pal_size=16,
        pal_heads=4,
        epochs=1,
        init_checkpoint=str(base / "best.pt"),
        phases=[{"name": "pal_only", "freeze": "all_but_pals", "lr": 1e-2}],
    )
    run_dir = run(cfg)
    init = load_checkpoint(base / "best.pt")["model"]
    final = load_checkpoint(run_dir / "best.pt")["model"]
    pal_keys = [k for k in final if ".pals." in f".{k}"]
    assert pal_keys and set(final) - set(pal_keys) == set(init)
    assert all(torch.equal(final[k], init[k]) for k in init)  # encoder and heads untouched
    ((before, after),) = phase_states
    assert any(not torch.equal(before[k], after[k]) for k in pal_keys)  # the PALs trained
    start = rows(run_dir, "start")[0]
    assert start["params"]["pals"] > 0

    # PALs trained from the start alongside everything else
    run_dir = run(smoke_cfg.replace(name="pals", pals=True, pal_size=16, pal_heads=4, epochs=1, batches_per_epoch=3))
    assert json.loads((run_dir / "metrics.json").read_text())["params"]["pals"] > 0


def test_init_checkpoint_errors(smoke_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="init_checkpoint"):
        run(smoke_cfg.replace(init_checkpoint=str(tmp_path / "nope.pt")))
    bad = tmp_path / "bad.pt"
    torch.save({"heads.sst.weight": torch.zeros(1)}, bad)  # not an mtlib checkpoint
    with pytest.raises(ValueError, match="bad.pt is not in mtlib's format"):
        run(smoke_cfg.replace(init_checkpoint=str(bad), name="bad"))
    from mtlib.rundir import save_checkpoint

    save_checkpoint(bad, {"model": {"heads.sst.weight": torch.zeros(1)}})
    with pytest.raises(ValueError, match="does not fit"):
        run(smoke_cfg.replace(init_checkpoint=str(bad), name="bad"))


def test_nan_dev_score_still_finishes(smoke_cfg, monkeypatch):
    # a constant STS prediction has no Pearson (nan); the run must still keep a best model and finish
    import mtlib.train.trainer as mtrain

    real = mtrain.evaluate

    def nan_evaluate(*args, **kwargs):
        scores, preds = real(*args, **kwargs)
        return {**scores, "sts": math.nan, "mean": math.nan}, preds

    monkeypatch.setattr(mtrain, "evaluate", nan_evaluate)
    run_dir = run(smoke_cfg.replace(epochs=2, patience=1))
    assert (run_dir / "best.pt").is_file() and (run_dir / "metrics.json").is_file()
    assert [r["epoch"] for r in rows(run_dir, "eval")] == [1, 2]  # nan is no improvement, not a crash


def test_precision_choices():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", cpu) in ("fp32", "bf16")
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp16", cpu)
