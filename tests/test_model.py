"""mtlib.model.multitask and mtlib.data.batches: pair encodings, output shapes, losses, parameter groups, batch streams."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from mtlib.model.backbones import load_backbone
from mtlib.data.batches import BatchStream, collate, eval_batches
from mtlib.config.run_config import RunConfig
from mtlib.data import Example
from mtlib import tasks
from mtlib.model.multitask import MultitaskModel

SST = [
    Example("s1", ("a lovely film",), 3),
    Example("s2", ("dull , too long and quite boring",), 0),
    Example("s3", ("fine",), 2),
]
PARA = [
    Example("p1", ("how do i learn python ?", "what is the best way to learn python ?"), 1),
    Example("p2", ("who is the president ?", "what is a cat ?"), 0),
    Example("p3", ("why is the sky blue ?", "why is the sky blue"), 1),
]
STS = [
    Example("t1", ("a man plays a guitar .", "a man is playing guitar ."), 4.6),
    Example("t2", ("a dog runs", "the stock market fell sharply today ."), 0.2),
    Example("t3", ("two kids play", "children are playing"), 3.0),
]
DATA = {"sst": SST, "para": PARA, "sts": STS}


@pytest.fixture(scope="module")
def tokenizer():
    return load_backbone("tiny-random")[1]


def make_model(**changes) -> MultitaskModel:
    cfg = RunConfig(backbone="tiny-random", **changes)
    torch.manual_seed(0)
    encoder, tok = load_backbone("tiny-random", seed=0)
    return MultitaskModel(cfg, encoder, tok)


def test_collate_concat_sentences(tokenizer):
    batch = collate(PARA, tokenizer, "concat_sentences")
    enc = batch["enc"]
    assert "enc2" not in batch and batch["ids"] == ["p1", "p2", "p3"]
    assert batch["labels"].tolist() == [1.0, 0.0, 1.0]
    ids, types, mask = enc["input_ids"], enc["token_type_ids"], enc["attention_mask"]
    assert ids.shape == types.shape == mask.shape
    # padded to the batch's own longest pair, never to a fixed length
    assert ids.shape[1] == int(mask.sum(1).max())
    for row in range(len(PARA)):
        n = int(mask[row].sum())
        toks = ids[row, :n].tolist()
        seps = [i for i, t in enumerate(toks) if t == tokenizer.sep_token_id]
        assert toks[0] == tokenizer.cls_token_id and len(seps) == 2 and seps[1] == n - 1
        # token type 0 up to and including the first [SEP], 1 on the second sentence and its [SEP]
        assert types[row, : seps[0] + 1].eq(0).all() and types[row, seps[0] + 1 : n].eq(1).all()
        assert types[row, n:].eq(0).all()
        first, second = (tokenizer(s, add_special_tokens=False)["input_ids"] for s in PARA[row].sentences)
        assert toks[1 : seps[0]] == first and toks[seps[0] + 1 : seps[1]] == second


def test_collate_concat_embed_and_single(tokenizer):
    batch = collate(STS, tokenizer, "concat_embed")
    assert set(batch) == {"enc", "enc2", "labels", "ids"}
    for key, sentence in (("enc", STS[1].sentences[0]), ("enc2", STS[1].sentences[1])):
        ids, mask = batch[key]["input_ids"][1], batch[key]["attention_mask"][1]
        assert ids[mask.bool()].tolist() == tokenizer(sentence)["input_ids"]
    assert batch["enc"]["token_type_ids"].eq(0).all() and batch["enc2"]["token_type_ids"].eq(0).all()
    assert batch["labels"].dtype == torch.float32
    single = collate(SST, tokenizer, "concat_embed")  # sst has one sentence in both modes
    assert "enc2" not in single and single["labels"].tolist() == [3.0, 0.0, 2.0]
    unlabelled = collate([Example("x", ("a", "b"), None)], tokenizer, "concat_sentences")
    assert "labels" not in unlabelled


@pytest.mark.parametrize("pair_mode", ["concat_sentences", "concat_embed"])
def test_output_shapes_losses_predictions(tokenizer, pair_mode):
    model = make_model(pair_mode=pair_mode, n_hidden_layers=1)
    model.eval()
    for task, examples in DATA.items():
        batch = collate(examples, tokenizer, pair_mode)
        assert ("enc2" in batch) == (pair_mode == "concat_embed" and task != "sst")
        out = model(task, batch)
        assert out.shape == ((3, 5) if task == "sst" else (3,))
        loss = model.loss(task, out, batch["labels"])
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        preds = model.predictions(task, out)
        assert preds.shape == (3,)
        if task == "sst":
            assert preds.dtype == torch.long and set(preds.tolist()) <= set(range(5))
        elif task == "para":
            assert preds.dtype == torch.long and set(preds.tolist()) <= {0, 1}
            assert preds.tolist() == (torch.sigmoid(out) > 0.5).long().tolist()
        else:
            assert preds.dtype == torch.float32 and torch.equal(preds, out.float())
    # the pair heads read [e1; e2] in concat_embed mode
    hidden = model.encoder.config.hidden_size
    first = next(p for p in model.heads["sts"].parameters() if p.dim() == 2)
    assert first.shape[1] == (2 * hidden if pair_mode == "concat_embed" else hidden)


def test_concat_embed_sts_in_range(tokenizer):
    model = make_model(pair_mode="concat_embed")
    model.eval()
    batch = collate(STS, tokenizer, "concat_embed")
    with torch.no_grad():
        for p in model.heads["sts"].parameters():
            p.mul_(1000)  # push the logit far out: 5*sigmoid still stays inside [0, 5]
        out = model("sts", batch)
    assert ((out >= 0) & (out <= 5)).all()


def test_predictions_and_losses_by_hand():
    logits = torch.tensor([[0.0, 3.0, 0.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0, 0.0]])
    assert MultitaskModel.predictions("sst", logits).tolist() == [1, 0]
    assert MultitaskModel.predictions("para", torch.tensor([0.0, 0.1, -2.0])).tolist() == [0, 1, 0]  # 0.5 -> 0
    assert MultitaskModel.loss("sts", torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0])).item() == pytest.approx(2.0)
    bce = MultitaskModel.loss("para", torch.tensor([0.0]), torch.tensor([1.0])).item()
    assert bce == pytest.approx(np.log(2))
    ce = MultitaskModel.loss("sst", torch.zeros(1, 5), torch.tensor([2.0])).item()
    assert ce == pytest.approx(np.log(5))


def test_batch_independent_predictions(tokenizer):
    # a pair's prediction does not depend on what else is in its batch (the original's padding did)
    model = make_model()
    model.eval()
    with torch.no_grad():
        together = model("sts", collate(STS, tokenizer, "concat_sentences"))
        alone = torch.stack([model("sts", collate([ex], tokenizer, "concat_sentences"))[0] for ex in STS])
    assert torch.allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize("head,head_tasks", [("rnn", "all"), ("lstm", "sts")])
def test_recurrent_heads(tokenizer, head, head_tasks):
    model = make_model(head=head, head_size=16, head_cls=True, head_tasks=head_tasks)
    assert model.head_kinds == {t: (head if head_tasks == "all" or t == "sts" else "mlp") for t in DATA}
    for task, examples in DATA.items():
        out = model(task, collate(examples, tokenizer, "concat_sentences"))
        dim = tasks.get(task).out_dim
        assert out.shape == ((3, dim) if dim > 1 else (3,))
        assert torch.isfinite(model.loss(task, out, torch.tensor([ex.label for ex in examples])))


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling(tokenizer, pooling):
    model = make_model(pooling=pooling)
    batch = collate(SST, tokenizer, "concat_sentences")
    states, pooled = model.encode("sst", batch["enc"])
    if pooling == "cls":
        assert torch.equal(pooled, states[:, 0])
    else:  # padding does not count
        mask = batch["enc"]["attention_mask"]
        n = int(mask[2].sum())
        assert torch.allclose(pooled[2], states[2, :n].mean(0), atol=1e-6)


def test_input_embeddings_match_token_path(tokenizer):
    model = make_model()
    model.eval()
    batch = collate(PARA, tokenizer, "concat_sentences")
    with torch.no_grad():
        a = model("para", batch)
        b = model("para", batch, inputs_embeds=model.input_embeddings(batch))
    assert torch.allclose(a, b, atol=1e-6)


def test_parameter_groups_without_pals():
    model = make_model()
    assert model.pal_parameters() == []
    assert len(model.shared_parameters()) == len(list(model.encoder.parameters()))
    counts = model.parameter_counts()
    assert counts["pals"] == 0
    assert counts["total"] == counts["encoder"] + sum(counts[f"head_{t}"] for t in DATA)
    assert counts["trainable"] == counts["total"]
    assert counts["head_sst"] == 64 * 5 + 5  # no hidden layer: one Linear(64, 5)


def test_parameter_groups_with_pals(tokenizer):
    plain = make_model()
    model = make_model(pals=True, pal_size=16, pal_heads=4)
    pal_ids = {id(p) for p in model.pal_parameters()}
    shared_ids = {id(p) for p in model.shared_parameters()}
    assert pal_ids and not pal_ids & shared_ids
    assert pal_ids | shared_ids == {id(p) for p in model.encoder.parameters()}
    counts = model.parameter_counts()
    assert counts["encoder"] == plain.parameter_counts()["encoder"]  # the backbone's weights stay as they were
    assert counts["total"] == counts["encoder"] + counts["pals"] + sum(counts[f"head_{t}"] for t in DATA)
    # PAL parameter names keep the backbone's own names intact
    assert set(plain.state_dict()) < set(model.state_dict())
    for task, examples in DATA.items():
        out = model(task, collate(examples, tokenizer, "concat_sentences"))
        assert torch.isfinite(out).all()


# ---------------------------------------------------------------- batches
def numbered(n: int) -> list[Example]:
    return [Example(str(i), ("x" * (i % 7 + 1),), i) for i in range(n)]


def test_batch_stream_reshuffles_each_pass_with_fixed_size():
    stream = BatchStream(numbered(10), batch_size=3, seed=0)
    passes = []
    for _ in range(4):  # 3 batches of 3 per pass; the short tail (1 example) is dropped
        batches = [stream.next() for _ in range(3)]
        assert all(len(b) == 3 for b in batches)
        ids = [ex.id for b in batches for ex in b]
        assert len(set(ids)) == 9  # no repeats inside a pass
        passes.append(ids)
    assert stream.passes == 3
    assert len({tuple(p) for p in passes}) == 4  # a fresh permutation every pass
    # over many passes every example is seen
    seen = Counter(ex.id for _ in range(300) for ex in stream.next())
    assert set(seen) == {str(i) for i in range(10)}


def test_batch_stream_state_round_trip(tmp_path):
    a = BatchStream(numbered(10), batch_size=4, seed=1)
    for _ in range(5):
        a.next()
    torch.save(a.state_dict(), tmp_path / "s.pt")
    expected = [[ex.id for ex in a.next()] for _ in range(10)]
    b = BatchStream(numbered(10), batch_size=4, seed=2)
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert [[ex.id for ex in b.next()] for _ in range(10)] == expected
    assert b.passes == a.passes
    with pytest.raises(ValueError, match="no examples"):
        BatchStream([], 4, 0)


def test_batch_stream_seeded():
    a, b = BatchStream(numbered(10), 3, seed=5), BatchStream(numbered(10), 3, seed=5)
    assert [ex.id for ex in a.next()] == [ex.id for ex in b.next()]


def test_eval_batches_cover_every_index_once():
    examples = numbered(23)
    batches = list(eval_batches(examples, 5))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(23))
    lengths = [len(examples[i].sentences[0]) for i in flat]
    assert lengths == sorted(lengths, reverse=True)  # similar lengths share a batch
    assert list(eval_batches([], 4)) == []
