"""Run under torchrun by tests/test_distributed.py (one launch, several checks: a launch costs seconds of imports).

    torchrun --standalone --nproc-per-node 2 tests/distributed_driver.py OUT CONFIG.yaml [--no-dropout] CONFIG.yaml ...

Trains each config (one process group, the configs one after another; after ``--no-dropout`` the tiny
encoder's own dropout is off too, see ``no_encoder_dropout``), then compares the per-task gradient rows of one
combined step, summed over the ranks, with the rows one process computes on the whole batches; rank 0 writes
OUT/rows.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from mtlib.config.run_config import RunConfig
from mtlib.data.batches import BatchStream
from mtlib.experiments.resolve import resolve_config
from mtlib.train import distributed as mdist
from mtlib.methods import gradients as mgrad
from mtlib.train.trainer import run


def gradient_rows(cfg: RunConfig) -> dict:
    """Max |rows summed over ranks - rows of one process on the whole batches|, for the shared encoder's
    ``[T, D_active]`` buffer (dense and row-sparse parts) and for the heads."""
    from mtlib.model.backbones import load_backbone
    from mtlib.model.multitask import ModelConfig, MultitaskModel
    from mtlib.train.run_data import load_run_data
    from mtlib.train.steps import BatchLoss

    device = mdist.rank_device(torch.device("cpu"))
    data = load_run_data(cfg)
    results = {}
    for sharded in (False, True):
        torch.manual_seed(cfg.seed)
        encoder, tokenizer = load_backbone(cfg.backbone, seed=cfg.seed)
        model = MultitaskModel(ModelConfig.of(cfg), encoder, tokenizer).to(device).train()
        model.set_dropout(0.0)
        streams = {
            t: BatchStream(data["train"][t], cfg.batch_size[t], seed=cfg.seed + i) for i, t in enumerate(cfg.tasks)
        }
        shared = [p for p in model.shared_parameters() if p.requires_grad]
        tg = mgrad.TaskGradients(shared, len(cfg.tasks), embeddings=[model.encoder.get_input_embeddings()])
        batch_loss = BatchLoss(model, streams, device, "fp32")
        heads = [p for p in model.parameters() if p.requires_grad and id(p) not in {id(q) for q in tg.params}]
        if sharded:
            batch_loss.shard = mdist.BatchShard(mdist.rank(), mdist.world_size())
            tg.sync = mdist.GradientSync(heads)
        for ti, task in enumerate(cfg.tasks):
            tg.begin(ti)
            batch_loss(task).backward()
            tg.store(ti)
        rows = tg.gradients().clone()
        if sharded:
            tg.sync.reduce_private()
        results[sharded] = (
            rows,
            [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in heads],
            [r.numel() for r in tg._rows],
        )
    (ref, ref_heads, ref_ids), (got, got_heads, got_ids) = results[False], results[True]
    return {
        "rows_shape": list(got.shape),
        "rows_max_abs_diff": float((got - ref).abs().max()) if got.shape == ref.shape else None,
        "rows_max_abs": float(ref.abs().max()),
        "embedding_rows": [ref_ids, got_ids],
        "heads_max_abs_diff": max(float((a - b).abs().max()) for a, b in zip(got_heads, ref_heads)),
    }


def no_encoder_dropout() -> None:
    """The tiny-random encoder without its dropout (BertConfig's 0.1): N processes then compute exactly what one
    does; the tests apply the same patch to their 1-process runs."""
    from transformers import BertConfig

    from mtlib.model import backbones

    base = backbones.tiny_config

    def tiny_config(vocab_size: int) -> BertConfig:
        cfg = base(vocab_size)
        cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
        return cfg

    backbones.tiny_config = tiny_config


def main(out: str, args: list[str]) -> None:
    configs = [a for a in args if a != "--no-dropout"]
    for path in args:
        if path == "--no-dropout":
            no_encoder_dropout()
        else:
            run(resolve_config(path))
    rows = gradient_rows(resolve_config(configs[-1]))
    if mdist.rank() == 0:
        Path(out, "rows.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
