"""The course data: the file registry and fetching (``sources``), parsing and loading (``parse``), EDA
augmentation (``augment``), batches (``batches``) and the course's metrics and prediction files (``metrics``)."""

from mtlib.data.sources import (
    FETCH_COMMAND, FILES, NLTK_RESOURCES, OPTIONAL_FILES, QUORA_SUBSETS, SHARED_MIRROR, ChecksumError, default_data_dir,
    fetch, nltk_data_dir, resolve_data_dir, sha256_file,
)
from mtlib.data.parse import (
    QUORA_TRAIN_OPTIONS, SPLITS, Example, ExampleList, LoadReport, dataset_summary, filter_by_length,
    load_split, preprocess_string, quora_train_source, read_task_file, split_available, split_files,
)

__all__ = [
    "FETCH_COMMAND", "FILES", "NLTK_RESOURCES", "OPTIONAL_FILES", "QUORA_SUBSETS", "SHARED_MIRROR", "ChecksumError",
    "default_data_dir", "fetch", "nltk_data_dir", "resolve_data_dir", "sha256_file",
    "QUORA_TRAIN_OPTIONS", "SPLITS", "Example", "ExampleList", "LoadReport", "dataset_summary",
    "filter_by_length", "load_split", "preprocess_string", "quora_train_source", "read_task_file",
    "split_available", "split_files",
]
