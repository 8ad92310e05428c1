"""A BERT encoder's forward pass on the real tokens only (``unpad: true``), as MosaicBERT and NVIDIA's BERT do.

Everything but attention works token by token: embeddings, Q/K/V, the attention output projection, the
feed-forward layers, GELU, dropout, the residuals and LayerNorm run on the ``[N_real, H]`` rows of the batch's
real tokens; only attention itself runs in the padded ``[B, heads, L, d]`` layout (scatter in, gather out).
A batch padded to 1.3 slots per real token (length-bucketed) or 2 (random) saves that much of the linear
layers' work, which is ~70% of a CPU training step. With dropout off the outputs at the real tokens equal
transformers' own forward (tests/test_unpadded.py); with dropout on, masks are drawn for ``[N_real, H]``
rather than ``[B, L, H]`` tensors, so a run differs from its padded twin as another seed would (``unpad`` is in
the run id).

It reads the weights of transformers' ``BertModel`` modules, so checkpoints, PALs (``mtlib.model.pals``, computed
here in the padded layout, where their own attention runs) and freezing are unchanged. Padded positions of the
returned states are zero (heads read them only through the attention mask).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import BertModel
from transformers.models.bert.modeling_bert import eager_attention_forward


def supports_unpadded(encoder) -> bool:
    """Whether ``encoder`` is a BERT whose layers this module knows (RoBERTa, DeBERTa: their own forward)."""
    return type(encoder) is BertModel and getattr(encoder.config, "position_embedding_type", "absolute") in (
        None,
        "absolute",
    )


def unpadded_forward(
    encoder: BertModel,
    attention_mask: Tensor,
    input_ids: Tensor | None = None,
    token_type_ids: Tensor | None = None,
    inputs_embeds: Tensor | None = None,
    pals=None,
) -> tuple[Tensor, Tensor | None]:
    """(last hidden states [B, L, H] with zeros at padded positions, pooler output [B, H] or None)."""
    batch, length = attention_mask.shape
    real = attention_mask.reshape(-1).nonzero().squeeze(1)  # flat indices of the real tokens
    emb = encoder.embeddings
    positions = torch.arange(length, device=attention_mask.device).expand(batch, length).reshape(-1)[real]
    types = torch.zeros_like(positions) if token_type_ids is None else token_type_ids.reshape(-1)[real]
    if inputs_embeds is None:
        words = emb.word_embeddings(input_ids.reshape(-1)[real])
    else:
        words = inputs_embeds.reshape(batch * length, -1)[real]
    h = words + emb.token_type_embeddings(types)
    h = emb.dropout(emb.LayerNorm(h + emb.position_embeddings(positions)))

    keep = attention_mask.bool()
    for index, layer in enumerate(encoder.encoder.layer):
        h = _layer(layer, index, h, real, keep, batch, length, pals)

    states = h.new_zeros(batch * length, h.shape[-1]).index_copy(0, real, h).view(batch, length, -1)
    pooled = encoder.pooler(states) if encoder.pooler is not None else None
    return states, pooled


def _padded(x: Tensor, real: Tensor, batch: int, length: int) -> Tensor:
    return x.new_zeros(batch * length, x.shape[-1]).index_copy(0, real, x).view(batch, length, -1)


def _layer(layer, index: int, h: Tensor, real: Tensor, keep: Tensor, batch: int, length: int, pals) -> Tensor:
    attn = layer.attention.self
    heads, size = attn.num_attention_heads, attn.attention_head_size

    def split(x: Tensor) -> Tensor:  # [N, H] -> [B, heads, L, d]
        return _padded(x, real, batch, length).view(batch, length, heads, size).transpose(1, 2)

    q, k, v = split(attn.query(h)), split(attn.key(h)), split(attn.value(h))
    dropout = attn.dropout.p if attn.training else 0.0
    if encoder_attention(layer) == "eager":  # keyed dropout draws through F.dropout (mtlib.model.keyed_dropout)
        mask = torch.zeros(keep.shape, dtype=q.dtype, device=q.device).masked_fill(~keep, torch.finfo(q.dtype).min)
        context, _ = eager_attention_forward(attn, q, k, v, mask[:, None, None, :], attn.scaling, dropout)
    else:
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep[:, None, None, :], dropout_p=dropout, scale=attn.scaling
        ).transpose(1, 2)
    context = context.reshape(batch * length, heads * size)[real]

    residual = h
    if pals is not None and pals.active_task is not None:  # PAL_t(h), in the padded layout its attention needs
        padded = _padded(h, real, batch, length)
        residual = h + pals.pal_output(index, padded, keep).reshape(batch * length, -1)[real]
    out = layer.attention.output
    h = out.LayerNorm(out.dropout(out.dense(context)) + residual)  # not out(...): PALs' hook is for the padded path
    return layer.output(layer.intermediate(h), h)


def encoder_attention(layer) -> str:
    return getattr(layer.attention.self.config, "_attn_implementation", "sdpa") or "sdpa"
