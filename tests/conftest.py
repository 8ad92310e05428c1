"""Shared fixtures: a small copy of the course data and a smoke-profile RunConfig writing into tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One intra-op thread: the tiny test models gain nothing from more, and on a shared 2-core machine two
# spinning OpenMP threads make each step ~100x slower. The variable reaches papermill's kernels too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mtlib import data  # noqa: E402
from mtlib.config.run_config import RunConfig  # noqa: E402
from mtlib.experiments.resolve import resolve_config  # noqa: E402

SMALL_ROWS = 240  # rows per course file in the small copy: enough for batches and dev subsamples


def _course_data_dir() -> Path | None:
    for root in (data.default_data_dir(), data.SHARED_MIRROR):
        if (root / "ids-sst-train.csv").is_file() and (root / "quora-train-subset-head.csv").is_file():
            return root
    return None


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory) -> Path:
    """The first SMALL_ROWS rows of every course file (parsing 100k Quora rows per run would dominate)."""
    src = _course_data_dir()
    if src is None:
        pytest.skip("course data not fetched (python -m mtlib data fetch)")
    dst = tmp_path_factory.mktemp("data")
    for path in src.glob("*.csv"):
        with open(path, encoding="utf-8") as f:
            lines = [line for _, line in zip(range(SMALL_ROWS + 1), f)]
        (dst / path.name).write_text("".join(lines), encoding="utf-8")
    if (src / "nltk_data").is_dir():  # EDA needs WordNet and the tagger beside the course files
        (dst / "nltk_data").symlink_to(src / "nltk_data", target_is_directory=True)
    return dst


@pytest.fixture
def smoke_cfg(tmp_path, small_data_dir) -> RunConfig:
    """The smoke profile (tiny-random, fp32, no progress) with out_dir in tmp_path and a small train subset."""
    return resolve_config(
        "smoke",
        out_dir=str(tmp_path / "runs"),
        data_dir=str(small_data_dir),
        max_train_examples=32,
        progress=False,
        threads=None,
    )
