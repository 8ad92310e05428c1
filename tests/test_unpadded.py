"""The unpadded encoder (mtlib.model.unpadded) equals transformers' padded forward at the real tokens."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import BertModel

from mtlib.model.backbones import tiny_config
from mtlib.model.multitask import ModelConfig, MultitaskModel
from mtlib.model.unpadded import supports_unpadded


def _models(pals: bool, pooling: str, attn: str):
    config = tiny_config(1000)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    config._attn_implementation = attn
    torch.manual_seed(0)
    encoder = BertModel(config)
    cfg = ModelConfig(pals=pals, pooling=pooling, hidden_dropout=0.0, pal_size=12, pal_heads=3)
    padded = MultitaskModel(cfg, encoder, init_seed=1)
    unpadded = MultitaskModel(dataclasses.replace(cfg, unpad=True), BertModel(config), init_seed=1)
    unpadded.load_state_dict(padded.state_dict())
    if pals:  # U_t starts at zero (the plain model): move it so the PAL term counts
        with torch.no_grad():
            for m in (padded, unpadded):
                for up in m.encoder.pals.up.values():
                    torch.manual_seed(2)
                    up.weight.normal_(std=0.5)
    return padded, unpadded


def _batch():
    torch.manual_seed(3)
    ids = torch.randint(5, 1000, (4, 9))
    mask = torch.ones(4, 9, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    types = torch.zeros_like(ids)
    types[:, 4:] = 1
    return {
        "enc": {"input_ids": ids, "attention_mask": mask, "token_type_ids": types * mask},
        "labels": torch.rand(4) * 5,
    }


@pytest.mark.parametrize("pals", [False, True])
@pytest.mark.parametrize("pooling", ["pooler", "mean"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_same_outputs_losses_and_gradients_as_the_padded_encoder(pals, pooling, attn):
    padded, unpadded = _models(pals, pooling, attn)
    batch = _batch()
    real = batch["enc"]["attention_mask"].bool()
    for task in ("sst", "sts"):
        grads = []
        for model in (padded, unpadded):
            model.train()
            model.zero_grad()
            states, _ = model.encode(task, batch["enc"])
            out = model(task, batch)
            labels = batch["labels"] if task == "sts" else batch["labels"].long()
            model.loss(task, out, labels).backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
            if model is padded:
                ref_states, ref_out = states, out
        assert (states[real] - ref_states[real]).abs().max() < 1e-6
        assert (states[~real] == 0).all()
        assert (out - ref_out).abs().max() < 1e-6
        assert grads[0].keys() == grads[1].keys()
        assert max((grads[0][n] - grads[1][n]).abs().max().item() for n in grads[0]) < 1e-6


def test_smart_perturbs_the_same_input_embeddings():
    padded, unpadded = _models(False, "pooler", "sdpa")
    batch = _batch()
    embeds = padded.input_embeddings(batch) + 0.01
    a, b = padded("sts", batch, inputs_embeds=embeds), unpadded("sts", batch, inputs_embeds=embeds)
    assert (a - b).abs().max() < 1e-6


def test_only_plain_bert_is_unpadded():
    class OtherBert(BertModel):  # a BERT variant with its own forward keeps it
        pass

    config = tiny_config(1000)
    assert supports_unpadded(BertModel(config))
    assert not supports_unpadded(OtherBert(config))
