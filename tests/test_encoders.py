"""Other encoders than BERT: tiny random RoBERTa and DeBERTa-v2 (v3's architecture) saved to a local folder in
the test (no download), loaded as a backbone by path: their own pair encoding, pooling, PALs, a few smoke steps."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import (
    DebertaV2Config,
    DebertaV2Model,
    DebertaV2Tokenizer,
    DistilBertConfig,
    DistilBertModel,
    RobertaConfig,
    RobertaModel,
    RobertaTokenizer,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

from mtlib.data.batches import collate
from mtlib.data.parse import Example
from mtlib.model.backbones import load_backbone
from mtlib.model.multitask import ModelConfig, MultitaskModel
from mtlib.model.pals import find_pals
from mtlib.rundir import model_state, read_history
from mtlib.train.trainer import run

SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"-()"


def save_tiny_roberta(path) -> str:
    """RoBERTa with a byte-level BPE vocabulary without merges (every byte a token): its real tokenizer class."""
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", *bytes_to_unicode().values(), "<mask>"])}
    tokenizer = RobertaTokenizer(vocab=vocab, merges=[])
    torch.manual_seed(0)
    model = RobertaModel(
        RobertaConfig(
            vocab_size=len(vocab),
            max_position_embeddings=514,
            type_vocab_size=1,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            **SIZE,
        )
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def save_tiny_deberta(path) -> str:
    """DeBERTa-v3's architecture (DebertaV2Model: relative positions, no token types, no pooler) with a tiny
    Unigram vocabulary of characters."""
    vocab = [(t, 0.0) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] + [("▁", -2.0)]
    vocab += [(c, -3.0) for c in CHARS] + [("▁" + c, -2.5) for c in CHARS]
    tokenizer = DebertaV2Tokenizer(vocab=vocab, do_lower_case=True)
    torch.manual_seed(0)
    model = DebertaV2Model(
        DebertaV2Config(
            vocab_size=len(vocab),
            max_position_embeddings=512,
            type_vocab_size=0,
            relative_attention=True,
            position_buckets=32,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            norm_rel_ebd="layer_norm",
            **SIZE,
        )
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def encoder_dirs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("encoders")
    return {"roberta": save_tiny_roberta(root / "roberta"), "deberta": save_tiny_deberta(root / "deberta")}


PAIRS = [Example("a", ("a cat sat.", "the dog ran!"), 1.0), Example("b", ("hello", "x"), 0.0)]


def test_pairs_are_encoded_by_the_encoders_own_tokenizer(encoder_dirs):
    _, roberta = load_backbone(encoder_dirs["roberta"])
    batch = collate(PAIRS, roberta, "concat_sentences")
    tokens = roberta.convert_ids_to_tokens(batch["enc"]["input_ids"][0])
    assert tokens[0] == "<s>" and tokens[-1] == "</s>" and tokens.count("</s>") == 3  # <s> a </s></s> b </s>
    assert tokens[tokens.index("</s>") + 1] == "</s>"
    assert "token_type_ids" not in batch["enc"]  # RoBERTa has one token type
    _, deberta = load_backbone(encoder_dirs["deberta"])
    enc = collate(PAIRS, deberta, "concat_sentences")["enc"]
    tokens = deberta.convert_ids_to_tokens(enc["input_ids"][0])
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2
    assert enc["token_type_ids"][0].tolist() == [0] * (tokens.index("[SEP]") + 1) + [1] * (
        len(tokens) - tokens.index("[SEP]") - 1
    )


@pytest.mark.parametrize("kind, pooling", [("roberta", "pooler"), ("deberta", "cls")])
def test_other_encoders_train_on_smoke_with_pals(kind, pooling, encoder_dirs, smoke_cfg):
    cfg = smoke_cfg.replace(
        backbone=encoder_dirs[kind],
        pooling=pooling,
        pals=True,
        pal_size=12,
        pal_heads=3,
        lr=1e-3,
        epochs=1,
        batches_per_epoch=6,
        log_every=3,
    )
    initial, _ = load_backbone(cfg.backbone)
    run_dir = run(cfg)
    losses = [r["loss"] for r in read_history(run_dir) if r["type"] == "train"]
    assert len(losses) == 2 and all(math.isfinite(v) for row in losses for v in row.values())
    dev = json.loads((run_dir / "metrics.json").read_text())["dev"]
    assert set(dev) == {"sst", "para", "sts", "mean"} and math.isfinite(dev["sst"] + dev["para"])
    best = model_state(run_dir / "best.pt")
    moved = [k for k, v in initial.state_dict().items() if not torch.equal(best[f"encoder.{k}"], v)]
    assert moved, "the encoder did not train"
    assert any(best[k].abs().sum() > 0 for k in best if ".pals.up." in k and k.endswith("weight"))  # PALs moved


def test_an_encoder_without_a_pooler_refuses_pooler_pooling(encoder_dirs):
    encoder, tokenizer = load_backbone(encoder_dirs["deberta"])
    with pytest.raises(ValueError, match="key 'pooling' is 'pooler' but this encoder .DebertaV2Model. has no pooler"):
        MultitaskModel(ModelConfig(pooling="pooler"), encoder, tokenizer)


def test_pals_refuse_an_encoder_without_bert_style_layers():
    encoder = DistilBertModel(DistilBertConfig(vocab_size=50, dim=32, n_layers=1, n_heads=4, hidden_dim=64))
    with pytest.raises(ValueError, match="PALs need BERT-style layers.*'distilbert'.*set pals: false"):
        MultitaskModel(ModelConfig(pooling="cls", pals=True, pal_size=12, pal_heads=3), encoder)


@pytest.mark.parametrize("kind", ["roberta", "deberta"])
def test_pals_start_neutral_and_read_the_encoders_mask(kind, encoder_dirs):
    encoder, tokenizer = load_backbone(encoder_dirs[kind])
    plain = MultitaskModel(ModelConfig(pooling="cls"), encoder, tokenizer).eval()
    with torch.no_grad():
        before = plain("sts", collate(PAIRS, tokenizer, "concat_sentences"))
    encoder, _ = load_backbone(encoder_dirs[kind])  # the same weights, loaded again
    model = MultitaskModel(ModelConfig(pooling="cls", pals=True, pal_size=12, pal_heads=3), encoder, tokenizer)
    model.heads.load_state_dict(plain.heads.state_dict())
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model("sts", collate(PAIRS, tokenizer, "concat_sentences")), before, atol=1e-6)
        for up in find_pals(model.encoder).up.values():  # move the PALs: now they change the output ...
            up.weight.normal_(std=0.5)
        padded = model("sts", collate(PAIRS, tokenizer, "concat_sentences"))[1]  # "hello"/"x" padded in a batch
        alone = model("sts", collate(PAIRS[1:], tokenizer, "concat_sentences"))[0]
    assert not torch.allclose(padded, before[1], atol=1e-4)
    assert torch.allclose(padded, alone, atol=1e-5)  # ... and never read the padding (the mask is understood)
