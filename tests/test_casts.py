"""bf16 autocast casts every weight once per update (mtlib.machine.runtime.casts_kept), not once per batch."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import BertModel

from mtlib.machine.runtime import autocast, casts_kept
from mtlib.model.backbones import tiny_config
from mtlib.model.multitask import ModelConfig, MultitaskModel


class CountCasts(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.casts = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._to_copy.default and (kwargs or {}).get("dtype") == torch.bfloat16:
            self.casts += 1
        return func(*args, **(kwargs or {}))


def _update(model, batches, keep: bool):
    """Three task batches as a combined step does them: forward in its own autocast region, then backward."""
    model.zero_grad()
    with CountCasts() as counter, casts_kept("bf16" if keep else "fp32"):
        for task, batch in batches:
            with autocast(torch.device("cpu"), "bf16"):
                loss = model.loss(task, model(task, batch), batch["labels"])
            loss.backward()
    return counter.casts, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_weights_are_cast_once_per_update_with_the_same_gradients():
    config = tiny_config(1000)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    model = MultitaskModel(ModelConfig(hidden_dropout=0.0, unpad=True), BertModel(config), init_seed=1).train()
    ids = torch.randint(5, 1000, (4, 7))
    enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    batches = [
        ("sst", {"enc": enc, "labels": torch.tensor([0, 1, 2, 3])}),
        ("para", {"enc": enc, "labels": torch.tensor([0, 1, 1, 0])}),
        ("sts", {"enc": enc, "labels": torch.rand(4) * 5}),
    ]
    per_batch, grads = _update(model, batches, keep=False)
    once, kept = _update(model, batches, keep=True)
    weights = sum(1 for n, p in model.encoder.named_parameters() if p.dim() == 2 and "embeddings" not in n)
    assert per_batch - once >= 2 * weights  # the encoder's matrices: cast for the first batch only
    assert grads.keys() == kept.keys()
    assert all(torch.equal(grads[n], kept[n]) for n in grads)
    # the cache is gone after the block: the optimizer's new weights are cast afresh next update
    assert not torch.is_autocast_enabled("cpu")
