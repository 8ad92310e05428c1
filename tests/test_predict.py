"""python -m mtlib predict: a run's best.pt gives back its own dev scores and prediction files exactly; a checkpoint
of another model shape is refused with one line."""

from __future__ import annotations

import json

import pytest

from mtlib.cli import main
from mtlib.data.metrics import metric_name
from mtlib.model.backbones import load_backbone
from mtlib.model.multitask import ModelConfig, MultitaskModel
from mtlib.rundir import CheckpointError, save_checkpoint
from mtlib.train.rescore import predict_run
from mtlib.train.trainer import run


@pytest.fixture
def finished_run(smoke_cfg):
    return run(smoke_cfg.replace(epochs=1, batches_per_epoch=4, lr=1e-3))


@pytest.mark.parametrize("final_dev", [{"final_dev": "subsample"}, {"final_dev": "full", "final_dev_max": 40}])
def test_predict_reproduces_the_runs_own_dev_scores_and_files(final_dev, smoke_cfg, tmp_path):
    run_dir = run(smoke_cfg.replace(epochs=1, batches_per_epoch=4, lr=1e-3, **final_dev))
    own = json.loads((run_dir / "metrics.json").read_text())["dev"]
    result = predict_run(run_dir, out_dir=tmp_path / "again")
    assert result["scores"] == own  # exactly: same rows, batches and precision
    for task in ("sst", "para", "sts"):
        name = f"{task}-dev-output.csv"
        assert (tmp_path / "again" / name).read_bytes() == (run_dir / "predictions" / name).read_bytes()


def test_predict_cli_prints_the_three_scores_and_the_mean(finished_run, capsys):
    own = json.loads((finished_run / "metrics.json").read_text())["dev"]
    assert main(["predict", str(finished_run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if line.startswith("dev ")] == [
        *(f"dev {t} {metric_name(t)} {own[t]:.4f}" for t in ("sst", "para", "sts")),
        f"dev mean {own['mean']:.4f}",
    ]
    out_dir = finished_run.parents[2] / "predict" / finished_run.parent.name / finished_run.name / "best"
    assert f"wrote {out_dir / 'sts-dev-output.csv'}" in out
    assert (out_dir / "sts-dev-output.csv").read_bytes() == (
        finished_run / "predictions" / "sts-dev-output.csv"
    ).read_bytes()


def test_test_split_writes_the_files_it_has_data_for(finished_run):
    result = predict_run(finished_run, split="test", checkpoint="best.pt", out_dir=finished_run.parent / "test-preds")
    assert result["scores"] is None
    assert sorted(p.rsplit("/", 1)[1] for p in result["files"]) == ["sst-test-output.csv", "sts-test-output.csv"]
    assert result["skipped"] == ["para: no test file in the data folder"]  # not in the shared data


def test_a_checkpoint_of_another_model_shape_is_refused(finished_run, capsys):
    encoder, tokenizer = load_backbone("tiny-random")
    other = MultitaskModel(ModelConfig(n_hidden_layers=1), encoder, tokenizer)  # a hidden layer in every head
    path = save_checkpoint(finished_run.parent / "other.pt", {"model": other.state_dict()})
    with pytest.raises(
        CheckpointError, match=r"other.pt does not fit .*config.yaml \(backbone tiny-random.*unexpected"
    ):
        predict_run(finished_run, checkpoint=str(path))
    assert main(["predict", str(finished_run), "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith(f"error: checkpoint {path} does not fit") and "--debug" in err[1]
    assert not (finished_run.parents[2] / "predict").exists()  # nothing written


@pytest.mark.slow
def test_predict_reproduces_a_minilm_run_in_its_own_precision(smoke_cfg, tmp_path):
    cfg = smoke_cfg.replace(backbone="minilm-l6", pooling="mean", precision="auto", epochs=1, batches_per_epoch=3)
    run_dir = run(cfg)
    result = predict_run(run_dir, out_dir=tmp_path / "again")
    assert result["scores"] == json.loads((run_dir / "metrics.json").read_text())["dev"]
