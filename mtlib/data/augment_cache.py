"""The EDA cache: an augmented training set kept in ``<outputs>/cache/eda-<task>-<key>.jsonl`` so later runs of
the same rows, settings and seed do not augment again.

The key hashes everything the copies depend on (task, EDA settings, seed, the input rows, nlpaug's version
and the WordNet and tagger data); the file's first line records its row count and the digest of the rest,
so a file cut short, emptied or edited is said and rebuilt, never trained on. Written atomically with fsync.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Sequence

from mtlib.data.nltk_resources import NLTK_RESOURCES
from mtlib.data.parse import Example
from mtlib.data.sources import sha256_file_cached
from mtlib.rundir.atomic import atomic_write
from mtlib.rundir.temporaries import remove_dead_temporaries

CACHE_VERSION = 1  # bump when the augmentation procedure changes, to invalidate old cache files
CACHE_FORMAT = "mtlib-eda-cache-2"  # the first line of a cache file: row count and digest of the rest


def _examples_hash(examples: Sequence[Example]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.id, list(e.sentences), e.label]).encode())
        h.update(b"\n")
    return h.hexdigest()


def eda_inputs() -> dict:
    """What the augmented copies depend on besides the rows and settings: nlpaug's version and a digest of the
    NLTK data it reads (WordNet synonyms, the POS tagger), where NLTK finds them now; "missing" when absent."""
    import nltk

    try:
        version = metadata.version("nlpaug")
    except metadata.PackageNotFoundError:
        version = "missing"
    digest = hashlib.sha256()
    for resource in NLTK_RESOURCES.values():
        try:
            pointer = nltk.data.find(resource)
        except LookupError:
            return {"nlpaug": version, "nltk_data": "missing"}
        base = Path(getattr(pointer, "path", None) or pointer.zipfile.filename)  # a folder, or a zip file
        for f in sorted(base.rglob("*")) if base.is_dir() else [base]:
            if f.is_file():
                digest.update(
                    f"{resource}/{f.relative_to(base) if base.is_dir() else f.name}:{sha256_file_cached(f)}\n".encode()
                )
    return {"nlpaug": version, "nltk_data": digest.hexdigest()[:16]}


def cache_path(cache_dir: str | os.PathLike, task: str, examples: Sequence[Example], params, seed: int) -> Path:
    """`cache_dir/eda-<task>-<key>.jsonl`, key = sha256 of task, params, seed, the input rows and ``eda_inputs()``."""
    payload = json.dumps(
        {
            "v": CACHE_VERSION,
            "task": task,
            "params": dataclasses.asdict(params),
            "seed": seed,
            "examples": _examples_hash(examples),
            "inputs": eda_inputs(),
        },
        sort_keys=True,
    )
    return Path(cache_dir) / f"eda-{task}-{hashlib.sha256(payload.encode()).hexdigest()[:20]}.jsonl"


class CacheDamaged(ValueError):
    """A cache file whose content is not what was written (cut short, emptied, edited)."""


def read_cache(path: Path) -> list[Example]:
    """The examples of a cache file, after checking its header's row count and digest (``CacheDamaged``)."""
    header, _, body = path.read_bytes().partition(b"\n")
    try:
        head = json.loads(header)
        assert isinstance(head, dict) and head.get("format") == CACHE_FORMAT
    except (ValueError, AssertionError):
        raise CacheDamaged(
            f"{path}: no {CACHE_FORMAT} header (empty, cut short, or written by an earlier mtlib)"
        ) from None
    digest = hashlib.sha256(body).hexdigest()
    rows = body.decode("utf-8").splitlines()
    if digest != head.get("sha256") or len(rows) != head.get("rows"):
        raise CacheDamaged(
            f"{path}: {len(rows)} rows with sha256 {digest[:12]}..., but it was written with "
            f"{head.get('rows')} rows, sha256 {str(head.get('sha256'))[:12]}..."
        )
    return [Example(id=r["id"], sentences=tuple(r["sentences"]), label=r["label"]) for r in map(json.loads, rows)]


def write_cache(path: Path, examples: Sequence[Example]) -> None:
    """Atomically, with fsync, behind a header that lets a reader check it is whole."""
    body = "".join(
        json.dumps({"id": e.id, "sentences": list(e.sentences), "label": e.label}) + "\n" for e in examples
    ).encode("utf-8")
    head = {"format": CACHE_FORMAT, "rows": len(examples), "sha256": hashlib.sha256(body).hexdigest()}
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(path.parent)
    atomic_write(path, json.dumps(head).encode() + b"\n" + body)


def cached(path: Path | None) -> list[Example] | None:
    if path is None or not path.exists():
        return None
    try:
        return read_cache(path)
    except (CacheDamaged, OSError, ValueError, KeyError, TypeError) as err:
        print(f"note: EDA cache file {path} is not usable ({err}); augmenting again", file=sys.stderr)
        return None
