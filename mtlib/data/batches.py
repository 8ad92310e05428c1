"""Batches: tokenization padded to each batch's own longest example, endless shuffled task streams.

The original cycled its loaders without reshuffling after the second pass (docs/original.md §9, item 2); a
``BatchStream`` reshuffles every pass and its position is part of the checkpoint, so a resumed run
draws the same batches an uninterrupted one would.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from mtlib.data.bucketing import example_lengths, length_bucketed
from mtlib.data.parse import Example

MAX_LEN = 512


def collate(examples: Sequence[Example], tokenizer, pair_mode: str, device: torch.device | str = "cpu") -> dict:
    """Tokenize a list of examples into model inputs; labels as a tensor when present."""
    columns = [[ex.sentences[j] for ex in examples] for j in range(len(examples[0].sentences))]
    # truncation=True is "longest_first": a pair is trimmed from its longer sentence
    kwargs = dict(padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
    if len(columns) == 2 and pair_mode == "concat_sentences":
        encodings = [tokenizer(*columns, **kwargs)]
    else:  # one sentence, or concat_embed: each sentence encoded alone
        encodings = [tokenizer(column, **kwargs) for column in columns]
    batch: dict = {key: {k: v.to(device) for k, v in enc.items()} for key, enc in zip(("enc", "enc2"), encodings)}
    if examples[0].label is not None:
        batch["labels"] = torch.tensor([ex.label for ex in examples], dtype=torch.float32, device=device)
    batch["ids"] = [ex.id for ex in examples]
    return batch


class BatchStream:
    """An endless stream of shuffled batches of one task's examples (a fresh permutation per pass)."""

    def __init__(self, examples: Sequence[Example], batch_size: int, seed: int, batching: str = "random"):
        if not examples:
            raise ValueError("BatchStream: no examples")
        self.examples = list(examples)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        # "length": each pass bucketed by length inside shuffled pools (mtlib.data.bucketing)
        self.lengths = example_lengths(self.examples) if batching == "length" else None
        self.order = self._permutation()
        self.pos = 0
        self.passes = 0

    def next(self) -> list[Example]:
        if self.pos + self.batch_size > len(self.order):
            # drop the short tail of a pass, reshuffle (batches keep one size)
            self.order = self._permutation()
            self.pos = 0
            self.passes += 1
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return [self.examples[i] for i in idx]

    @property
    def drawn(self) -> int:
        """How many batches ``next`` has returned (the index of the next one): read off the position."""
        return self.passes * max(1, len(self.examples) // self.batch_size) + self.pos // self.batch_size

    def _permutation(self) -> np.ndarray:
        order = self.rng.permutation(len(self.examples))
        return order if self.lengths is None else length_bucketed(order, self.lengths, self.batch_size, self.rng)

    def state_dict(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "order": self.order.tolist(),
            "pos": self.pos,
            "passes": self.passes,
        }

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order = np.asarray(state["order"], dtype=np.int64)
        self.pos, self.passes = state["pos"], state["passes"]


def eval_batches(examples: Sequence[Example], batch_size: int) -> Iterator[list[int]]:
    """Index batches sorted by length, so each padded batch holds similar lengths (fast evaluation)."""
    lengths = np.array([sum(len(s) for s in ex.sentences) for ex in examples])
    order = np.argsort(-lengths, kind="stable")
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size].tolist()
