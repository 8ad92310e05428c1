"""Tests for mtlib.model.heads: shapes, padding invariance of the recurrent heads, widths, errors."""

import pytest
import torch

from mtlib.model.heads import HEAD_KINDS, MLPHead, RecurrentHead, build_head, count_parameters

H = 64


def _inputs(batch: int = 3, length: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pooled = torch.randn(batch, H, generator=g)
    tokens = torch.randn(batch, length, H, generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    if batch == 3:
        mask[1, 5:] = 0
        mask[2, 3:] = 0
    return pooled, tokens, mask


@pytest.mark.parametrize("kind", HEAD_KINDS)
@pytest.mark.parametrize("n_hidden_layers", [0, 1, 2])
def test_output_shape(kind: str, n_hidden_layers: int) -> None:
    head = build_head(kind, in_dim=H, hidden_size=H, out_dim=5, n_hidden_layers=n_hidden_layers, dropout=0.1, size=16)
    pooled, tokens, mask = _inputs()
    assert head(pooled, tokens, mask).shape == (3, 5)
    assert head(pooled, tokens, None).shape == (3, 5)


def test_mlp_layout_and_parameter_count() -> None:
    head = MLPHead(H, 5, n_hidden_layers=1, dropout=0.2)
    kinds = [type(m).__name__ for m in head.classifier]
    assert kinds == ["Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert count_parameters(head) == (H * H + H) + (H * 5 + 5)
    # The MLP never looks at the token states.
    pooled, _, _ = _inputs()
    head.eval()
    assert torch.equal(head(pooled, None, None), head(pooled, torch.zeros(3, 2, H), torch.ones(3, 2)))


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("use_cls", [False, True])
def test_extra_padding_does_not_change_output(cell: str, use_cls: bool) -> None:
    head = RecurrentHead(H, 3, cell=cell, size=16, use_cls=use_cls).eval()
    pooled, tokens, mask = _inputs()
    expected = head(pooled, tokens, mask)

    # Five more positions of garbage, masked out, and garbage in the already-padded positions too.
    longer = torch.cat([tokens, 100 * torch.randn(3, 5, H)], dim=1)
    longer_mask = torch.cat([mask, torch.zeros(3, 5, dtype=torch.long)], dim=1)
    longer[longer_mask == 0] = -50.0
    torch.testing.assert_close(head(pooled, longer, longer_mask), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_row_output_independent_of_batch(cell: str) -> None:
    # The original read the last padded position, so a row's prediction depended on its batch-mates.
    head = RecurrentHead(H, 2, cell=cell, size=16).eval()
    pooled, tokens, mask = _inputs()
    alone = head(pooled[2:], tokens[2:, :3], mask[2:, :3])
    torch.testing.assert_close(head(pooled, tokens, mask)[2:], alone, rtol=0, atol=1e-6)


def test_interior_padding_is_skipped() -> None:
    # Pair inputs put padding inside the sequence: [CLS] s1 [SEP] PAD [SEP] ...; the head must read only real tokens.
    head = RecurrentHead(H, 2, size=16).eval()
    _, tokens, _ = _inputs(batch=1, length=6)
    compact = head(None, tokens[:, :4], None)
    spread = torch.cat([tokens[:, :2], torch.randn(1, 3, H), tokens[:, 2:4]], dim=1)
    spread_mask = torch.tensor([[1, 1, 0, 0, 0, 1, 1]])
    torch.testing.assert_close(head(None, spread, spread_mask), compact, rtol=0, atol=1e-6)


def test_reads_last_real_token_not_first() -> None:
    # Changing the last real token must change the output; changing a pad must not.
    head = RecurrentHead(H, 2, size=16).eval()
    pooled, tokens, mask = _inputs()
    base = head(pooled, tokens, mask)
    changed = tokens.clone()
    changed[2, 2] += 1.0  # last real token of row 2
    assert not torch.allclose(head(pooled, changed, mask)[2], base[2])


def test_use_cls_widens_feature_and_uses_cls_state() -> None:
    plain = RecurrentHead(H, 2, size=16, use_cls=False, n_hidden_layers=1)
    with_cls = RecurrentHead(H, 2, size=16, use_cls=True, n_hidden_layers=1)
    assert plain.feature_dim == 16 and with_cls.feature_dim == 16 + H
    assert with_cls.classifier[1].in_features == 16 + H
    assert with_cls.classifier[1].out_features == 16 + H  # fc_size defaults to the feature width
    narrow = RecurrentHead(H, 2, size=16, use_cls=True, fc_size=8)
    assert narrow.classifier[1].out_features == 8

    with_cls.eval()
    pooled, tokens, mask = _inputs()
    base = with_cls(pooled, tokens, mask)
    changed = tokens.clone()
    changed[:, 0] += 1.0  # the [CLS] state feeds the MLP directly, not the RNN
    assert not torch.allclose(with_cls(pooled, changed, mask), base)


def test_recurrent_init_xavier_zero_bias() -> None:
    head = RecurrentHead(H, 2, cell="lstm", size=16)
    for name, param in head.rnn.named_parameters():
        if name.startswith("bias"):
            assert torch.count_nonzero(param) == 0
    bound = (6 / (H + 4 * 16)) ** 0.5  # xavier bound for weight_ih_l0 of shape [4*16, H]
    assert head.rnn.weight_ih_l0.abs().max() <= bound


def test_count_parameters_trainable_only() -> None:
    head = RecurrentHead(H, 2, size=16)
    total = count_parameters(head)
    for p in head.rnn.parameters():
        p.requires_grad_(False)
    assert count_parameters(head, trainable_only=True) == total - count_parameters(head.rnn)


def test_build_head_errors() -> None:
    with pytest.raises(ValueError, match="mlp, rnn, lstm"):
        build_head("gru", in_dim=H, out_dim=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cell"):
        RecurrentHead(H, 1, cell="gru")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="token_states"):
        RecurrentHead(H, 1)(torch.zeros(2, H), None, None)
