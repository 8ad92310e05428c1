"""mtlib.train.evaluate: the final evaluation reuses the best epoch's dev-subsample predictions, and they are the
values it would have computed (the subsample is batched as every epoch batches it)."""

from __future__ import annotations

import numpy as np
import torch

from mtlib.model.backbones import load_backbone
from mtlib.model.multitask import ModelConfig, MultitaskModel
from mtlib.train.evaluate import evaluate
from mtlib.train.run_data import load_run_data


def _model_and_data(smoke_cfg):
    cfg = smoke_cfg.replace(final_dev="full", final_dev_max=40, dev_split="none")  # the subsample inside dev
    encoder, tokenizer = load_backbone("tiny-random", seed=0)
    model = MultitaskModel(ModelConfig.of(cfg), encoder, tokenizer)
    return model, load_run_data(cfg), cfg


def test_the_subsample_part_of_the_final_evaluation_is_the_epochs_predictions(smoke_cfg):
    model, data, cfg = _model_and_data(smoke_cfg)
    cpu = torch.device("cpu")
    assert all(len(data["dev_sub"][t]) < len(data["dev"][t]) for t in cfg.tasks)  # a real split into two groups
    _, epoch = evaluate(model, data["dev_sub"], cfg.eval_batch_size, cpu, "fp32")
    scores_known, known = evaluate(model, data["dev"], cfg.eval_batch_size, cpu, "fp32", data["dev_sub"], epoch)
    scores_again, again = evaluate(model, data["dev"], cfg.eval_batch_size, cpu, "fp32", data["dev_sub"])
    assert scores_known == scores_again
    for task in cfg.tasks:
        assert np.array_equal(known[task], again[task])  # bit for bit
        at = {ex.id: i for i, ex in enumerate(data["dev"][task])}
        assert np.array_equal(again[task][[at[ex.id] for ex in data["dev_sub"][task]]], epoch[task])


def test_known_predictions_are_used_not_computed_again(smoke_cfg):
    model, data, cfg = _model_and_data(smoke_cfg)
    cpu = torch.device("cpu")
    sentinel = {t: np.full(len(data["dev_sub"][t]), 2.5) for t in ("sts",)}  # a value the model does not predict
    _, preds = evaluate(
        model, {"sts": data["dev"]["sts"]}, cfg.eval_batch_size, cpu, "fp32", {"sts": data["dev_sub"]["sts"]}, sentinel
    )
    assert int((preds["sts"] == 2.5).sum()) == len(data["dev_sub"]["sts"])


def test_a_subsample_outside_dev_is_predicted_in_one_group(smoke_cfg):
    model, data, cfg = _model_and_data(smoke_cfg)
    cpu = torch.device("cpu")
    dev = {"sst": data["dev"]["sst"][:5]}  # most of the subsample is not in it
    plain, _ = evaluate(model, dev, cfg.eval_batch_size, cpu, "fp32")
    grouped, _ = evaluate(model, dev, cfg.eval_batch_size, cpu, "fp32", {"sst": data["dev_sub"]["sst"]})
    assert plain == grouped
