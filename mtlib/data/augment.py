"""EDA augmentation (Wei & Zou 2019) through nlpaug, with the study's class balancing and a cache.

The study ran jasonwei20/eda_nlp by hand on the length-filtered train files (docs/original.md §1,
`preprocessing/data_augmentation.py`): per class c, deficit d_c = count(majority) - count(c); after a
shuffle take the first floor(d_c/2) rows of each minority class; one augmented copy per row, made by
synonym replacement (alpha=0.05) or random deletion (p=0.1); concat with the originals, shuffle,
drop duplicate texts. We do the same offline through nlpaug, seeded, and without EDA's extra
"cleaned original" copy. STS is never augmented.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import random
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np

from mtlib import tasks as task_records
from mtlib.data.parse import Example
from mtlib.data.augment_cache import cache_path, cached, write_cache
from mtlib.data.nltk_resources import NLTKDataError, _missing_resources, ensure_nltk_data  # noqa: F401 - EDA API

BALANCE_MODES = ("half_deficit", "full_deficit")


def augmented_classes(task: str) -> tuple[int, ...] | None | bool:
    """Which classes EDA may augment (the task's ``augment``): None = every class below the majority, a tuple
    of class ids (the study augments only Quora positives, whatever the subset's balance), False = none."""
    augment = task_records.get(task).augment
    return None if augment == "minority" else False if augment == "none" else tuple(augment)


# The study's outputs hold ~47% synonym replacement, ~40% deletion, ~12% identical copies: EDA with
# insertion and swap off keeps one of its SR and RD outputs at random, and RD (each word with p=0.1)
# often deletes nothing in a short sentence. So each copy draws SR or RD with probability 1/2.
SYNONYM_OP_PROB = 0.5
# EDA's stop-word list (eda_nlp `code/eda.py`): never replaced by a synonym.
EDA_STOPWORDS = frozenset(
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she "
    "her hers herself it its itself they them their theirs themselves what which who whom this that "
    "these those am is are was were be been being have has had having do does did doing a an the and "
    "but if or because as until while of at by for with about against between into through during "
    "before after above below to from up down in out on off over under again further then once here "
    "there when where why how all any both each few more most other some such no nor not only own "
    "same so than too very s t can will just don should now".split()
)


@dataclass(frozen=True)
class EDAParams:
    """EDA settings inferred from the study's committed outputs (docs/original.md §1; not recorded by the authors)."""

    synonym_p: float = 0.05  # EDA alpha_sr: max(1, int(p * n_words)) words replaced
    deletion_p: float = 0.1  # nlpaug RandomWordAug(action='delete') aug_p: ceil(p * n_words) words
    num_aug: int = 1  # augmented copies per selected row
    balance: Literal["half_deficit", "full_deficit"] = "half_deficit"
    max_augment: int | None = None  # cap on augmented rows per class (None = no cap)

    def __post_init__(self) -> None:
        for key in ("synonym_p", "deletion_p"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"EDAParams.{key} must be in [0, 1], got {value!r}")
        if self.num_aug < 1:
            raise ValueError(f"EDAParams.num_aug must be >= 1, got {self.num_aug!r}")
        if self.balance not in BALANCE_MODES:
            raise ValueError(f"EDAParams.balance must be one of {BALANCE_MODES}, got {self.balance!r}")
        if self.max_augment is not None and self.max_augment < 0:
            raise ValueError(f"EDAParams.max_augment must be >= 0 or None, got {self.max_augment!r}")


# ----------------------------------------------------------------------------- nlpaug wrappers


@functools.lru_cache(maxsize=4)
def _nlpaug_augmenters(synonym_p: float, deletion_p: float) -> tuple[Any, Any]:
    """Build (synonym, deletion) nlpaug augmenters once per setting: loading them takes seconds."""
    import nlpaug.augmenter.word as naw
    from nlpaug.util import PartOfSpeech
    from nltk.tag.perceptron import PerceptronTagger

    class EDASynonymAug(naw.SynonymAug):
        """SynonymAug with EDA's word choice: skip stop words, pick only words that have a synonym,
        replace max(1, int(p * n)) of them (nlpaug picks blindly and rounds up)."""

        def generate_aug_cnt(self, size: int, aug_p: float | None = None) -> int:
            return max(1, int(self.aug_p * size)) if size else 0

        def is_stop_words(self, token: str) -> bool:
            return token.lower() in EDA_STOPWORDS

        def skip_aug(self, token_idxes: list[int], tokens: list[tuple[str, str]]) -> list[int]:
            kept = super().skip_aug(token_idxes, tokens)
            return [i for i in kept if self._has_synonym(*tokens[i])]

        def _has_synonym(self, word: str, tag: str) -> bool:
            poses = PartOfSpeech.constituent2pos(tag) or [None]
            return any(c.lower() != word.lower() for pos in poses for c in self.model.predict(word, pos=pos))

    # Whitespace tokens keep the input's own tokenisation (SST is PTB-tokenised) so that an edit
    # that changes nothing gives back the exact original text, which the duplicate filter drops.
    words = dict(aug_min=1, aug_max=None, tokenizer=str.split, reverse_tokenizer=" ".join)
    synonym = EDASynonymAug(aug_src="wordnet", aug_p=synonym_p, **words)
    # nltk.pos_tag builds a new tagger (5.7 MB of JSON) on every call; tag with one instance instead.
    synonym.model.pos_tag = PerceptronTagger().tag
    return synonym, naw.RandomWordAug(action="delete", aug_p=deletion_p, **words)


def _build_augmenter(params: EDAParams) -> Callable[[str, str], str]:
    """Return `augment(text, op)` with op in {'synonym', 'delete'}; randomness from global state."""
    synonym, deletion = _nlpaug_augmenters(params.synonym_p, params.deletion_p)

    def augment(text: str, op: str) -> str:
        out = (synonym if op == "synonym" else deletion).augment(text)
        new = out[0] if out else text
        return new if new.strip() else text  # deleting every word of a one-word sentence

    return augment


@contextlib.contextmanager
def _seeded_globals() -> Iterator[None]:
    """nlpaug draws from `random` and `np.random` global state: restore both afterwards, and make any
    attempt to download NLTK data fail loudly instead of reaching for the network."""
    import nltk

    py_state, np_state, download = random.getstate(), np.random.get_state(), nltk.download

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise NLTKDataError(f"nlpaug tried nltk.download{args}; run `python -m mtlib data fetch`")

    nltk.download = no_download
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        nltk.download = download


def _copy_seed(seed: int, example_id: str, k: int) -> int:
    # One seed per augmented copy: its text does not depend on which other rows were selected.
    digest = hashlib.sha256(f"{seed}\0{example_id}\0{k}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


# ----------------------------------------------------------------------------- balancing


def class_counts(task: str, examples: Sequence[Example]) -> dict[Any, int]:
    """Examples per label, sorted by label (None, for unlabelled rows, last)."""
    _check_task(task)
    counts = Counter(e.label for e in examples)
    return dict(sorted(counts.items(), key=lambda kv: (kv[0] is None, kv[0] if kv[0] is not None else 0)))


def _check_task(task: str) -> None:
    task_records.get(task)  # an unknown task: one line naming the known ones


def augment_targets(task: str, examples: Sequence[Example], params: EDAParams = EDAParams()) -> dict[int, int]:
    """Input rows to augment per class, each giving `num_aug` copies: copies wanted = floor(d_c/2)
    ('half_deficit') or d_c ('full_deficit'), capped by `max_augment`; rows = min(count_c, copies // num_aug)."""
    allowed = augmented_classes(task)
    if allowed is False:
        return {}
    counts = class_counts(task, examples)
    if None in counts:
        raise ValueError(f"{task}: augmentation needs labelled examples ({counts[None]} without a label)")
    majority = max(counts.values(), default=0)
    targets = {}
    for label, count in counts.items():
        if allowed is not None and label not in allowed:
            continue
        deficit = majority - count
        copies = deficit // 2 if params.balance == "half_deficit" else deficit
        if params.max_augment is not None:
            copies = min(copies, params.max_augment)
        rows = min(count, copies // params.num_aug)
        if rows > 0:
            targets[label] = rows
    return targets


# ----------------------------------------------------------------------------- entry point


def augment_examples(
    task: str,
    examples: Sequence[Example],
    params: EDAParams = EDAParams(),
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> list[Example]:
    """Originals plus EDA copies (ids `aug-<orig id>-<k>`), shuffled with `seed`; STS unchanged.

    Copies whose texts equal an original's or an earlier copy's are dropped. Unlike the study
    (shuffle, then drop_duplicates keep-first) originals are never dropped, so their ids survive.
    Same inputs and seed give the same list; the global `random`/NumPy states are left untouched.
    """
    if augmented_classes(task) is False:
        return list(examples)
    path = cache_path(cache_dir, task, examples, params, seed) if cache_dir is not None else None
    kept = cached(path)
    if kept is not None:
        return kept

    targets = augment_targets(task, examples, params)
    shuffled = list(examples)
    random.Random(f"eda-select-{seed}").shuffle(shuffled)  # the study's shuffle, seeded
    selected = [e for label, rows in targets.items() for e in [x for x in shuffled if x.label == label][:rows]]

    augmented: list[Example] = []
    if selected:
        if _missing_resources(None):  # a caller may already have run ensure_nltk_data(its dir)
            ensure_nltk_data()
        from tqdm.auto import tqdm

        with _seeded_globals():
            augment = _build_augmenter(params)
            for e in tqdm(selected, desc=f"EDA {task}", disable=not progress):
                for k in range(params.num_aug):
                    copy_seed = _copy_seed(seed, e.id, k)
                    random.seed(copy_seed)
                    np.random.seed(copy_seed)
                    op = "synonym" if random.random() < SYNONYM_OP_PROB else "delete"
                    # Quora pairs: both sentences get the same operation (the study flattened the
                    # pair with a " x1x " separator, which EDA could delete: 9% of pairs lost).
                    sentences = tuple(augment(s, op) for s in e.sentences)
                    augmented.append(dataclasses.replace(e, id=f"aug-{e.id}-{k}", sentences=sentences))

    seen = {e.sentences for e in examples}
    result = list(examples)
    for e in augmented:
        if e.sentences not in seen:
            seen.add(e.sentences)
            result.append(e)
    random.Random(f"eda-order-{seed}").shuffle(result)
    if path is not None:
        try:
            write_cache(path, result)
        except OSError as err:  # the cache is an optimisation: a read-only or full disk only costs the time
            print(f"note: EDA cache not written ({err}); the run goes on without it", file=sys.stderr)
    return result
