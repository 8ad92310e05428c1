"""Task heads on top of the shared encoder: an MLP on the pooled output, or an RNN/LSTM over the tokens.

Every head has the same call so `MultitaskModel` can treat them alike:

    head(pooled [B, P], token_states [B, L, H] | None, attention_mask [B, L] | None) -> [B, out_dim]

The MLP reads `pooled` (the BERT pooler output, as the original's main-branch heads did, docs/original.md §2). The recurrent
heads read `token_states` (the last hidden layer), as the original's `joss-lact-chance` branch did.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

HEAD_KINDS = ("mlp", "rnn", "lstm")


def _mlp(in_dim: int, hidden_dim: int, out_dim: int, n_hidden_layers: int, dropout: float) -> nn.Sequential:
    """n_hidden_layers x (Dropout -> Linear -> ReLU), then Dropout -> Linear: the original's layout (dropout
    *before* every linear, none after the last one)."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(n_hidden_layers):
        layers += [nn.Dropout(dropout), nn.Linear(width, hidden_dim), nn.ReLU()]
        width = hidden_dim
    layers += [nn.Dropout(dropout), nn.Linear(width, out_dim)]
    return nn.Sequential(*layers)


class MLPHead(nn.Module):
    """MLP on the pooled [CLS] vector (docs/original.md §2). Hidden layers keep the input width, as in the original
    (Linear(768, 768)); PyTorch default init."""

    def __init__(self, in_dim: int, out_dim: int, n_hidden_layers: int = 0, dropout: float = 0.2) -> None:
        super().__init__()
        if n_hidden_layers < 0:
            raise ValueError(f"n_hidden_layers must be >= 0, got {n_hidden_layers}")
        self.classifier = _mlp(in_dim, in_dim, out_dim, n_hidden_layers, dropout)

    def forward(
        self, pooled: Tensor, token_states: Tensor | None = None, attention_mask: Tensor | None = None
    ) -> Tensor:
        return self.classifier(pooled)


class RecurrentHead(nn.Module):
    """A 2-layer RNN (tanh) or LSTM over the token states, read at each row's last real token (docs/original.md §2).

    `use_cls=True` is the original's later variant (`1615719`, `8899b94`): the recurrent cell runs over tokens
    1: (without [CLS]) and the raw last-layer [CLS] state (not the pooler) is concatenated to its feature.

    Deviation from the original, which ran over every padded position and read the last one (a pad for all but
    the longest row, so a row's prediction depended on its batch): we move each row's real tokens to the front
    and pack them, so the feature is the final hidden state after the last real token and padding is never read.
    Moving tokens (rather than only packing) matters because the pair layout puts padding *inside* the
    sequence ([CLS] s1 [SEP] PAD* [SEP] [CLS] s2 ...).
    """

    def __init__(
        self,
        hidden_size: int,
        out_dim: int,
        cell: Literal["rnn", "lstm"] = "rnn",
        size: int = 128,
        num_layers: int = 2,
        use_cls: bool = False,
        n_hidden_layers: int = 1,
        dropout: float = 0.2,
        fc_size: int | None = None,
    ) -> None:
        super().__init__()
        if cell not in ("rnn", "lstm"):
            raise ValueError(f"cell must be 'rnn' or 'lstm', got {cell!r}")
        if n_hidden_layers < 0:
            raise ValueError(f"n_hidden_layers must be >= 0, got {n_hidden_layers}")
        self.use_cls = use_cls
        if cell == "rnn":
            self.rnn: nn.RNNBase = nn.RNN(hidden_size, size, num_layers, nonlinearity="tanh", batch_first=True)
        else:
            self.rnn = nn.LSTM(hidden_size, size, num_layers, batch_first=True)
        # The original (1615719+) used Xavier-uniform on every recurrent weight and zero biases.
        for name, param in self.rnn.named_parameters():
            if name.startswith("weight"):
                nn.init.xavier_uniform_(param)
            else:
                nn.init.zeros_(param)
        self.feature_dim = size + (hidden_size if use_cls else 0)
        self.classifier = _mlp(self.feature_dim, fc_size or self.feature_dim, out_dim, n_hidden_layers, dropout)

    def forward(
        self, pooled: Tensor | None, token_states: Tensor | None, attention_mask: Tensor | None = None
    ) -> Tensor:
        if token_states is None:
            raise ValueError("RecurrentHead reads token_states; got None")
        tokens = token_states[:, 1:] if self.use_cls else token_states
        if attention_mask is None:
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        else:
            mask = (attention_mask[:, 1:] if self.use_cls else attention_mask).bool()
        tokens, lengths = _real_tokens_first(tokens, mask)
        packed = nn.utils.rnn.pack_padded_sequence(tokens, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, final = self.rnn(packed)
        h_n = final[0] if isinstance(final, tuple) else final  # LSTM returns (h_n, c_n)
        # h_n[-1] is the top layer after each row's last real token, already back in the batch's row order.
        feature = h_n[-1]
        if self.use_cls:
            feature = torch.cat([feature, token_states[:, 0]], dim=-1)
        return self.classifier(feature)


def _real_tokens_first(tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Stable-move each row's unmasked tokens to the front (order kept) and return them with their counts.

    A row with no real token gets length 1 (pack_padded_sequence refuses 0); it then reads one pad position,
    which only happens for degenerate inputs (e.g. use_cls on a row that is [CLS] alone).
    """
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    tokens = torch.gather(tokens, 1, order.unsqueeze(-1).expand_as(tokens))
    lengths = mask.sum(dim=1).clamp(min=1)
    return tokens, lengths


def build_head(
    kind: str,
    *,
    in_dim: int,
    out_dim: int,
    hidden_size: int | None = None,
    n_hidden_layers: int = 0,
    dropout: float = 0.2,
    size: int = 128,
    use_cls: bool = False,
    fc_size: int | None = None,
) -> nn.Module:
    """Build a head by name. `in_dim` is the pooled width (MLP); `hidden_size` the token-state width
    (recurrent heads; defaults to `in_dim`, which is the same number for BERT)."""
    if kind == "mlp":
        return MLPHead(in_dim, out_dim, n_hidden_layers=n_hidden_layers, dropout=dropout)
    if kind in ("rnn", "lstm"):
        return RecurrentHead(
            hidden_size if hidden_size is not None else in_dim,
            out_dim,
            cell=kind,
            size=size,
            use_cls=use_cls,
            n_hidden_layers=n_hidden_layers,
            dropout=dropout,
            fc_size=fc_size,
        )
    raise ValueError(f"unknown head kind {kind!r}; allowed: {', '.join(HEAD_KINDS)}")


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (shared tensors counted once, as `parameters()` yields them once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
