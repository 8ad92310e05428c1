"""Backbone names resolve offline; a missing model is a clear error, never a network call."""

from __future__ import annotations

import pytest

from mtlib.model.backbones import load_backbone, minilm_path


def test_tiny_random_is_seeded_and_small():
    a, tok = load_backbone("tiny-random", seed=3)
    b, _ = load_backbone("tiny-random", seed=3)
    assert a.config.hidden_size == 64 and a.config.num_hidden_layers == 2
    assert tok.vocab_size == 30522  # the bert-base-uncased vocabulary
    assert all((p == q).all() for p, q in zip(a.parameters(), b.parameters()))


def test_minilm_resolves_to_the_pip_package():
    path = minilm_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def test_missing_model_names_it_and_the_known_names(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"no-such-model.*minilm-l6, tiny-random"):
        load_backbone(str(tmp_path / "no-such-model"))
