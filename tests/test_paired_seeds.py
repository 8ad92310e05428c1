"""Paired seeds: rows trained with the same seed share what the seed can fix, whatever else differs between
them: each task's head starts from the same numbers, and the k-th batch of a task gets the same dropout masks."""

from __future__ import annotations

import torch

from mtlib.data.batches import BatchStream
from mtlib.model.backbones import load_backbone
from mtlib.model.multitask import ModelConfig, MultitaskModel, keyed_seed
from mtlib.train.run_data import load_run_data
from mtlib.train.steps import BatchLoss


def _model(cfg, init_seed):
    encoder, tokenizer = load_backbone(cfg.backbone, seed=0)
    return MultitaskModel(ModelConfig.of(cfg), encoder, tokenizer, init_seed=init_seed)


def test_heads_start_alike_in_every_row_of_a_seed(smoke_cfg):
    plain = _model(smoke_cfg, init_seed=7)
    torch.manual_seed(123)  # whatever the generator did before
    torch.rand(1000)
    other = _model(smoke_cfg.replace(head="lstm", head_tasks="sts", pals=True), init_seed=7)
    for task in ("sst", "para"):  # their heads are the same kind in both rows
        for (name, a), (_, b) in zip(plain.heads[task].state_dict().items(), other.heads[task].state_dict().items()):
            assert torch.equal(a, b), (task, name)
    another_seed = _model(smoke_cfg, init_seed=8)
    mine, theirs = plain.heads["sst"].state_dict(), another_seed.heads["sst"].state_dict()
    assert any(not torch.equal(mine[k], theirs[k]) for k in mine)


def test_the_kth_batch_of_a_task_gets_the_same_dropout_masks(smoke_cfg):
    cfg = smoke_cfg.replace(hidden_dropout=0.5)
    data = load_run_data(cfg)
    model = _model(cfg, init_seed=7).train()

    def loss_of_batch(k: int, noise: int) -> float:
        streams = {t: BatchStream(data["train"][t], 4, seed=1) for t in cfg.tasks}
        for _ in range(k):
            streams["sst"].next()
        torch.manual_seed(noise)  # another row's generator state at this point
        step = BatchLoss(model, streams, torch.device("cpu"), "fp32", seed=cfg.seed)
        return step("sst").item()

    assert loss_of_batch(3, noise=1) == loss_of_batch(3, noise=2)  # the masks follow (seed, task, batch)
    assert loss_of_batch(3, noise=1) != loss_of_batch(4, noise=1)
    assert keyed_seed(1, "batch", "sst", 3) != keyed_seed(2, "batch", "sst", 3)
