"""Tokenization done once: every distinct sentence (or pair) is tokenized the first time a batch holds it,
its ids are kept, and later batches are padded from the kept ids.

``encode_batch`` returns what ``collate`` returns (the same tensors, tested) plus the batch's real and
padded token counts, counted on the host so that speed reports never wait for the device. On CUDA the
host tensors are pinned and copied without blocking.
"""

from __future__ import annotations

import weakref
from typing import Sequence

import numpy as np
import torch

from mtlib.data.batches import MAX_LEN
from mtlib.data.parse import Example

_CACHES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # tokenizer -> {key: encodings}


def _cache(tokenizer) -> dict:
    try:
        return _CACHES.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: no cache
        return {}


def _key(ex: Example, pair_mode: str) -> tuple:
    return (pair_mode if len(ex.sentences) == 2 else "", *ex.sentences)


def _tokenize(examples: Sequence[Example], tokenizer, pair_mode: str) -> list[list[dict]]:
    """Per example, its encodings (one, or two for a concat_embed pair) as lists of ids, unpadded."""
    columns = [[ex.sentences[j] for ex in examples] for j in range(len(examples[0].sentences))]
    kwargs = dict(truncation=True, max_length=MAX_LEN)  # as collate: "longest_first" trims a pair's longer side
    if len(columns) == 2 and pair_mode == "concat_sentences":
        encodings = [tokenizer(*columns, **kwargs)]
    else:
        encodings = [tokenizer(column, **kwargs) for column in columns]
    keys = [k for k in encodings[0].keys() if k != "attention_mask"]  # the mask follows from the length
    return [[{k: enc[k][i] for k in keys} for enc in encodings] for i in range(len(examples))]


def cached_encodings(examples: Sequence[Example], tokenizer, pair_mode: str) -> list[list[dict]]:
    cache = _cache(tokenizer)
    keys = [_key(ex, pair_mode) for ex in examples]
    missing = {k: ex for k, ex in zip(keys, examples) if k not in cache}
    if missing:
        for k, enc in zip(missing, _tokenize(list(missing.values()), tokenizer, pair_mode)):
            cache[k] = enc
    return [cache[k] for k in keys]


def pad(rows: list[dict], tokenizer) -> tuple[dict[str, torch.Tensor], int, int]:
    """(tensors padded to the longest row, real tokens, padded tokens), as the tokenizer pads."""
    lengths = [len(r["input_ids"]) for r in rows]
    width = max(lengths)
    pad_values = {"input_ids": tokenizer.pad_token_id or 0, "token_type_ids": tokenizer.pad_token_type_id}
    left = getattr(tokenizer, "padding_side", "right") == "left"
    out = {}
    for key in rows[0]:
        array = np.full((len(rows), width), pad_values.get(key, 0), dtype=np.int64)
        for i, r in enumerate(rows):
            if left:
                array[i, width - lengths[i] :] = r[key]
            else:
                array[i, : lengths[i]] = r[key]
        out[key] = array
    mask = np.arange(width)[None, :] < np.asarray(lengths)[:, None]
    out["attention_mask"] = (mask[:, ::-1] if left else mask).astype(np.int64)
    return {k: torch.from_numpy(v) for k, v in out.items()}, sum(lengths), len(rows) * width


def _to(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def encode_batch(examples: Sequence[Example], tokenizer, pair_mode: str, device: torch.device | str = "cpu") -> dict:
    """Model inputs of a batch (as ``collate``) from cached token ids, with ``n_tokens`` and ``n_padded``."""
    device = torch.device(device)
    per_example = cached_encodings(examples, tokenizer, pair_mode)
    batch: dict = {"n_tokens": 0, "n_padded": 0}
    for j, key in enumerate(("enc", "enc2")[: len(per_example[0])]):
        tensors, real, padded = pad([e[j] for e in per_example], tokenizer)
        batch[key] = {k: _to(v, device) for k, v in tensors.items()}
        batch["n_tokens"] += real
        batch["n_padded"] += padded
    if examples[0].label is not None:
        labels = torch.tensor([ex.label for ex in examples], dtype=torch.float32)
        batch["labels"] = _to(labels, device)
    batch["ids"] = [ex.id for ex in examples]
    return batch
