"""Tests for mtlib.data.augment: balancing arithmetic, determinism, task rules, cache, offline NLTK data."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mtlib.data import augment
from mtlib.data.augment import EDAParams, augment_examples, class_counts, ensure_nltk_data
from mtlib.data import Example, load_split

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED_DATA / "nltk_data").is_dir(), reason="no ../shared/data/nltk_data")


@pytest.fixture(scope="module", autouse=True)
def nltk_data() -> Path:
    return ensure_nltk_data(SHARED_DATA)


@pytest.fixture(scope="module")
def sst() -> list[Example]:
    return list(load_split("sst", "train", data_dir=SHARED_DATA))[:200]


@pytest.fixture(scope="module")
def para() -> list[Example]:
    return list(load_split("para", "train", data_dir=SHARED_DATA))[:300]


@pytest.fixture
def marker_augmenter(monkeypatch: pytest.MonkeyPatch) -> None:
    """An augmenter that always changes the text, so no copy is dropped as a duplicate."""
    monkeypatch.setattr(augment, "_build_augmenter", lambda params: lambda text, op: f"{text} <{op}>")


def expected_counts(examples: list[Example], classes: list[int], fraction: str = "half") -> dict:
    counts = Counter(e.label for e in examples)
    majority = max(counts.values())
    out = dict(counts)
    for c in classes:
        deficit = majority - counts[c]
        out[c] = counts[c] + min(counts[c], deficit // 2 if fraction == "half" else deficit)
    return out


def split(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    aug = [e for e in examples if e.id.startswith("aug-")]
    return [e for e in examples if not e.id.startswith("aug-")], aug


# ----------------------------------------------------------------------------- NLTK data


def test_ensure_nltk_data_points_nltk_at_shared_folder(nltk_data: Path) -> None:
    import nltk

    assert nltk_data == (SHARED_DATA / "nltk_data").resolve()
    assert str(nltk_data) in nltk.data.path
    assert str(nltk_data) in __import__("os").environ["NLTK_DATA"]


def test_missing_nltk_data_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(augment.NLTKDataError) as err:
        ensure_nltk_data(tmp_path)
    message = str(err.value)
    assert "wordnet" in message and "averaged_perceptron_tagger_eng" in message
    assert "python -m mtlib data fetch" in message

    # Only the tagger missing: the message names only the tagger.
    (tmp_path / "nltk_data" / "corpora").mkdir(parents=True)
    (tmp_path / "nltk_data" / "corpora" / "wordnet").symlink_to(SHARED_DATA / "nltk_data" / "corpora" / "wordnet")
    with pytest.raises(augment.NLTKDataError, match="missing averaged_perceptron_tagger_eng"):
        ensure_nltk_data(tmp_path)


# ----------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"synonym_p": 1.5}, "synonym_p"),
        ({"deletion_p": -0.1}, "deletion_p"),
        ({"num_aug": 0}, "num_aug"),
        ({"balance": "equal"}, "balance"),
        ({"max_augment": -1}, "max_augment"),
    ],
)
def test_params_validation_names_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        EDAParams(**kwargs)


# ----------------------------------------------------------------------------- balancing


def test_sst_half_deficit_counts_exact(sst: list[Example], marker_augmenter: None) -> None:
    out = augment_examples("sst", sst, seed=0)
    majority = max(Counter(e.label for e in sst).items(), key=lambda kv: kv[1])[0]
    minority = [c for c in range(5) if c != majority]
    assert class_counts("sst", out) == dict(sorted(expected_counts(sst, minority).items()))
    originals, aug = split(out)
    assert sorted(originals, key=lambda e: e.id) == sorted(sst, key=lambda e: e.id)  # every original kept once
    assert not [e for e in aug if e.label == majority]
    by_id = {e.id: e for e in sst}
    for e in aug:  # `aug-<orig id>-<k>`, same label, text from that original
        source = by_id[e.id[len("aug-") :].rsplit("-", 1)[0]]
        assert e.id.endswith("-0") and e.label == source.label
        assert e.sentences[0] in (source.sentences[0] + " <synonym>", source.sentences[0] + " <delete>")


def test_sst_full_deficit_and_cap(sst: list[Example], marker_augmenter: None) -> None:
    majority = max(Counter(e.label for e in sst).items(), key=lambda kv: kv[1])[0]
    minority = [c for c in range(5) if c != majority]
    full = augment_examples("sst", sst, EDAParams(balance="full_deficit"))
    assert class_counts("sst", full) == dict(sorted(expected_counts(sst, minority, "full").items()))
    capped = augment_examples("sst", sst, EDAParams(max_augment=3))
    assert all(n <= 3 for n in Counter(e.label for e in split(capped)[1]).values())


def test_sst_real_eda_moves_minorities_half_way(sst: list[Example]) -> None:
    targets = augment.augment_targets("sst", sst)
    out = augment_examples("sst", sst, seed=0)
    originals, aug = split(out)
    assert len(originals) == len(sst)
    made = Counter(e.label for e in aug)
    for label, rows in targets.items():
        # Copies identical to their original are dropped, as in the study; they should be rare.
        assert 0.8 * rows <= made[label] <= rows
    assert len({e.sentences for e in out}) == len(out)  # no duplicate texts
    originals_text = {e.id: e.sentences for e in sst}
    for e in aug:
        assert e.sentences != originals_text[e.id[4:-2]]
    # Both operations occur; deletion shortens, synonym replacement keeps the length near the original.
    shorter = sum(len(e.sentences[0].split()) < len(originals_text[e.id[4:-2]][0].split()) for e in aug)
    assert 0.2 * len(aug) < shorter < 0.8 * len(aug)


def test_deterministic_and_global_rng_untouched(sst: list[Example]) -> None:
    random.seed(123)
    np.random.seed(123)
    py_state, np_state = random.getstate(), np.random.get_state()
    a = augment_examples("sst", sst, seed=7)
    assert random.getstate() == py_state
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    b = augment_examples("sst", sst, seed=7)
    assert a == b
    c = augment_examples("sst", sst, seed=8)
    assert c != a
    assert {e.sentences for e in split(c)[1]} != {e.sentences for e in split(a)[1]}


def test_sts_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(augment, "_build_augmenter", lambda params: pytest.fail("STS must not be augmented"))
    sts = list(load_split("sts", "train", data_dir=SHARED_DATA))[:50]
    assert augment_examples("sts", sts, seed=3) == sts


def test_para_only_positives_both_sentences(para: list[Example], marker_augmenter: None) -> None:
    counts = Counter(e.label for e in para)
    assert counts[0] > counts[1]
    out = augment_examples("para", para, seed=0)
    assert class_counts("para", out) == dict(sorted(expected_counts(para, [1]).items()))
    for e in split(out)[1]:
        assert e.label == 1 and len(e.sentences) == 2
        ops = {s.rsplit(" ", 1)[1] for s in e.sentences}
        assert len(ops) == 1  # the same operation on s1 and s2

    # Negatives are never augmented, even when they are the minority.
    flipped = [e for e in para if e.label == 1] + [e for e in para if e.label == 0][: counts[1] // 3]
    assert split(augment_examples("para", flipped))[1] == []


def test_para_real_eda(para: list[Example]) -> None:
    out = augment_examples("para", para, seed=1)
    by_id = {e.id: e for e in para}
    aug = split(out)[1]
    assert aug and all(e.label == 1 for e in aug)
    assert all(e.sentences != by_id[e.id[4:-2]].sentences for e in aug)


def test_unlabelled_rows_rejected() -> None:
    with pytest.raises(ValueError, match="labelled"):
        augment_examples("sst", [Example("a", ("good .",), None), Example("b", ("bad .",), 1)])


# ----------------------------------------------------------------------------- cache


def test_cache_hit_skips_augmentation(sst: list[Example], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = augment_examples("sst", sst, seed=5, cache_dir=tmp_path)
    files = list(tmp_path.glob("eda-sst-*.jsonl"))
    assert len(files) == 1 and not list(tmp_path.glob(".*.tmp*"))

    def boom(params: EDAParams) -> None:
        raise AssertionError("augmenter rebuilt despite a cache hit")

    monkeypatch.setattr(augment, "_build_augmenter", boom)
    assert augment_examples("sst", sst, seed=5, cache_dir=tmp_path) == first
    # Any change in seed, params or input rows gives another key.
    key = augment.cache_path(tmp_path, "sst", sst, EDAParams(), 5)
    assert key == files[0]
    assert augment.cache_path(tmp_path, "sst", sst, EDAParams(), 6) != key
    assert augment.cache_path(tmp_path, "sst", sst, EDAParams(deletion_p=0.2), 5) != key
    assert augment.cache_path(tmp_path, "sst", sst[1:], EDAParams(), 5) != key
    with pytest.raises(AssertionError, match="rebuilt"):
        augment_examples("sst", sst, seed=6, cache_dir=tmp_path)


def test_progress_bar_runs(sst: list[Example], marker_augmenter: None, capsys: pytest.CaptureFixture) -> None:
    augment_examples("sst", sst[:60], progress=True)
    assert "EDA sst" in capsys.readouterr().err


def test_deletion_never_empties_a_sentence() -> None:
    augment_one = augment._build_augmenter(EDAParams())
    assert augment_one("good", "delete") == "good"
    assert augment_one("", "synonym") == ""
    assert len(augment_one("a truly wonderful and moving film .", "delete").split()) == 6
