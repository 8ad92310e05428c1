"""Course data: file registry, fetching (mirror folder, mirror URL or course repository), parsing, loaders.

Parsing follows the course starter loader (`datasets.py` of gpoesia/minbert-default-final-project, spec §1):
`csv.DictReader(delimiter='\\t')` with default quoting, SST text `lower().strip()`, Quora/STS text through
`preprocess_string`. Unlike the course, rows that fail to parse are counted and logged, never dropped silently.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Sequence

from mtlib import TASKS

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_MIRROR = REPO_ROOT.parent / "shared" / "data"  # the project's read-only copy, used when present
FETCH_COMMAND = "python -m mtlib data fetch"
COURSE_URL = "https://raw.githubusercontent.com/gpoesia/minbert-default-final-project/main/data/"
DOWNLOAD_TIMEOUT_S = 60.0


def default_data_dir() -> Path:
    """`$MTLIB_DATA_DIR`, else `<repo root>/data` (gitignored; filled by `fetch`). Read at call time."""
    env = os.environ.get("MTLIB_DATA_DIR")
    return Path(env).expanduser() if env else REPO_ROOT / "data"


DATA_DIR = default_data_dir()

OPTIONAL_FILES = frozenset({"quora-train.csv", "quora-test-student.csv"})  # absent from the shared data
QUORA_SUBSETS = ("quora-train-subset-head.csv", "quora-train-subset-extra.csv")  # needed only without quora-train.csv
_SHA256: dict[str, str | None] = {  # from the shared data's SHA256SUMS; None = never seen, accepted unverified
    "ids-sst-train.csv": "03b2b625c090f94a6afd59f114cde5282e2053aab0b101e87ed695d8a0c5b1df",
    "ids-sst-dev.csv": "a186ce94577635fbe10beaaddd50f16cccf6c30973221cefdf90deed2a584bfe",
    "ids-sst-test-student.csv": "bdd5a767faa0c26782117e37767ece154c30d5d04fb8727d09c71e3850a55c7b",
    "quora-train.csv": None,
    "quora-dev.csv": "bfa3cc954a9ba300ae776a980141de65f622a3c1b97e3fd905d63245bc36d5ad",
    "quora-test-student.csv": None,
    "sts-train.csv": "15d12efc2d656fffb1d61ac1f08ec4227f43925fd16f420c037cbd063699c21b",
    "sts-dev.csv": "ce3cad6f16062586ac7ba462c28b010a9be10c530fd5074165860d7b7ab4e93d",
    "sts-test-student.csv": "dee455745b72e9ca3ff74e7c056bd73e34bad5b8d5641045a2c1e7e131866f47",
    "quora-train-subset-head.csv": "9084a3616a0bd15c2a60afe31593f17ce5a6ee7d7481b03ddaba0ee82a234e88",
    "quora-train-subset-extra.csv": "9820938f35886471a8ac06d3a22aff275bbe27653506fe6140ba24827907acbb",
}
# name -> (sha256, url); url None = only mirrors have it (the subsets were cut for this project).
FILES: dict[str, tuple[str | None, str | None]] = {
    name: (sha, None if name in QUORA_SUBSETS else COURSE_URL + name) for name, sha in _SHA256.items()}
MIRROR_FOLDERS = ("reference", "nltk_data")  # copied as well; checked against the mirror's SHA256SUMS if any
MIRROR_DOCS = ("README.md", "SHA256SUMS")  # copied unverified from a mirror folder, so data/ documents itself
NLTK_RESOURCES = {"wordnet": "corpora/wordnet", "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng"}

SPLITS = ("train", "dev", "test")
SPLIT_FILES = {
    ("sst", "train"): "ids-sst-train.csv", ("sst", "dev"): "ids-sst-dev.csv", ("sst", "test"): "ids-sst-test-student.csv",
    ("para", "train"): "quora-train.csv", ("para", "dev"): "quora-dev.csv", ("para", "test"): "quora-test-student.csv",
    ("sts", "train"): "sts-train.csv", ("sts", "dev"): "sts-dev.csv", ("sts", "test"): "sts-test-student.csv",
}
TEXT_COLUMNS = {"sst": ("sentence",), "para": ("sentence1", "sentence2"), "sts": ("sentence1", "sentence2")}
LABEL_COLUMNS = {"sst": "sentiment", "para": "is_duplicate", "sts": "similarity"}
QUORA_TRAIN_OPTIONS = ("head", "head+extra")
QUORA_TRAIN_FULL_ROWS = 141_506  # rows of the course's quora-train.csv, for describing subsets


@dataclass(frozen=True)
class Example:
    id: str
    sentences: tuple[str, ...]  # normalised text: 1 for sst, 2 for para/sts
    label: int | float | None  # sst int 0-4, para int 0/1, sts float 0-5, None for test files


@dataclass
class LoadReport:
    files: tuple[str, ...]
    rows: int  # records csv.DictReader produced
    skipped: int  # rows dropped because a field failed to parse
    reasons: list[str] = field(default_factory=list)  # the first few, with file and line
    source: str = ""  # one line a run can record, e.g. "subset head+extra (56,331 usable of 141,506)"


class ExampleList(list[Example]):
    """A list of `Example` that also carries the `LoadReport` of how it was read."""

    def __init__(self, examples: list[Example], report: LoadReport) -> None:
        super().__init__(examples)
        self.report = report


class ChecksumError(ValueError):
    """A data file's sha256 differs from the registry's (or the mirror's SHA256SUMS)."""


# ---------------------------------------------------------------- parsing


def preprocess_string(s: str) -> str:
    """Course normalisation for Quora and STS: lowercase, space before . ? , ' and collapse whitespace."""
    return " ".join(s.lower().replace(".", " .").replace("?", " ?").replace(",", " ,").replace("'", " '").split())


def _normalise(task: str, text: str) -> str:
    return text.lower().strip() if task == "sst" else preprocess_string(text)


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}")


def _check_split(task: str, split: str) -> None:
    _check("task", task, TASKS)
    _check("split", split, SPLITS)


def _parse_label(task: str, raw: str | None) -> int | float:
    column = LABEL_COLUMNS[task]
    if raw is None:
        raise ValueError(f"{column} is missing")
    try:
        # The course's conversions: int(x.strip()) for SST, int(float(x)) for Quora, float(x) for STS.
        value: int | float = int(raw.strip()) if task == "sst" else int(float(raw)) if task == "para" else float(raw)
    except ValueError:
        raise ValueError(f"{column} {raw!r} is not a number") from None
    low, high = {"sst": (0, 4), "para": (0, 1), "sts": (0.0, 5.0)}[task]
    if not low <= value <= high:
        raise ValueError(f"{column} {raw!r} outside {low}..{high}")
    return value


def read_task_file(task: str, path: str | Path, labelled: bool = True) -> ExampleList:
    """Parse one course csv of `task`; `labelled=False` for test files (label None, no label column needed)."""
    _check("task", task, TASKS)
    path = Path(path)
    expected = ["id", *TEXT_COLUMNS[task], *([LABEL_COLUMNS[task]] if labelled else [])]
    examples: list[Example] = []
    reasons: list[str] = []
    rows = skipped = 0
    with open(path, encoding="utf-8", newline="") as fp:
        reader = csv.DictReader(fp, delimiter="\t")
        found = list(reader.fieldnames or [])  # SST test's header `0\t\tid\tsentence` gives ['0', '', 'id', ...]
        if any(c not in found for c in expected):
            raise ValueError(f"{path}: header has columns {found}, expected columns {expected}")
        for record in reader:
            rows += 1
            try:
                # A stray quote can swallow later fields, leaving them '' or None (2 rows in quora-dev).
                fields = [record[c] for c in ("id", *TEXT_COLUMNS[task])]
                if None in fields:
                    raise ValueError("row has too few fields")
                label = _parse_label(task, record[LABEL_COLUMNS[task]]) if labelled else None
            except ValueError as err:
                skipped += 1
                if len(reasons) < 5:
                    reasons.append(f"{path.name} line {reader.line_num}: {err}")
                continue
            texts = tuple(_normalise(task, t) for t in fields[1:])
            examples.append(Example(fields[0].lower().strip(), texts, label))
    if skipped:
        log.warning("%s: skipped %d malformed row(s) of %d (%s)", path.name, skipped, rows, "; ".join(reasons))
    report = LoadReport((path.name,), rows, skipped, reasons, f"{path.name} ({len(examples):,} usable of {rows:,})")
    return ExampleList(examples, report)


# ---------------------------------------------------------------- loaders


def _resolve(data_dir: str | Path | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def _require(path: Path) -> Path:
    if path.is_file():
        return path
    note = ""
    if path.name in OPTIONAL_FILES:
        note = " This file is not part of the project's shared data; it is used only when a mirror provides it."
    raise FileNotFoundError(f"data file {path.name} not found in {path.parent}. Fetch the data with "
                            f"`{FETCH_COMMAND}` (or point MTLIB_DATA_DIR at a folder holding it).{note}")


def _load_quora_train(root: Path, quora_train: str) -> ExampleList:
    _check("quora_train", quora_train, QUORA_TRAIN_OPTIONS)
    full = root / "quora-train.csv"
    if full.is_file():  # the whole course file wins whenever it is there
        out = read_task_file("para", full)
        out.report.source = f"full quora-train.csv ({len(out):,} usable of {out.report.rows:,})"
        return out
    names = QUORA_SUBSETS if quora_train == "head+extra" else QUORA_SUBSETS[:1]
    parts = [read_task_file("para", _require(root / n)) for n in names]
    examples = [ex for part in parts for ex in part]
    report = LoadReport(tuple(n for p in parts for n in p.report.files), sum(p.report.rows for p in parts),
                        sum(p.report.skipped for p in parts), [r for p in parts for r in p.report.reasons],
                        f"subset {quora_train} ({len(examples):,} usable of {QUORA_TRAIN_FULL_ROWS:,})")
    return ExampleList(examples, report)


def load_split(task: str, split: str, data_dir: str | Path | None = None,
               quora_train: str = "head+extra") -> ExampleList:
    """Examples of one task/split, parsed as the course does; `.report` says what was read and skipped.

    Quora train is `quora-train.csv` when present, else the subset files (`quora_train`: "head" alone is an
    unbiased sample; "head+extra" adds rows sampled separately by class, 35.6% positive against 37.5% in
    the head file). Quora test is not in the shared data: loading it raises FileNotFoundError; check with
    `split_available("para", "test")` first.
    """
    _check_split(task, split)
    root = _resolve(data_dir)
    if (task, split) == ("para", "train"):
        return _load_quora_train(root, quora_train)
    return read_task_file(task, _require(root / SPLIT_FILES[task, split]), labelled=split != "test")


def split_available(task: str, split: str, data_dir: str | Path | None = None) -> bool:
    """Whether `load_split(task, split, data_dir)` finds its file(s)."""
    _check_split(task, split)
    root = _resolve(data_dir)
    if (root / SPLIT_FILES[task, split]).is_file():
        return True
    return (task, split) == ("para", "train") and (root / QUORA_SUBSETS[0]).is_file()


def quora_train_source(data_dir: str | Path | None = None, quora_train: str = "head+extra") -> str:
    """What Quora train data a run uses, e.g. "subset head+extra (56,331 usable of 141,506)"."""
    return load_split("para", "train", data_dir, quora_train).report.source


def filter_by_length(examples: Sequence[Example], max_chars: int = 250) -> list[Example]:
    """The original's train-only "top 2%" cut: keep iff the normalised sentences total <= max_chars."""
    return [ex for ex in examples if sum(len(s) for s in ex.sentences) <= max_chars]


def dataset_summary(data_dir: str | Path | None = None, quora_train: str = "head+extra") -> pd.DataFrame:
    """One row per task/split: source, examples, skipped rows, length-filter survivors, labels, mean length."""
    import pandas as pd  # imported here: slow to import, and only the notebooks need it

    rows: list[dict[str, Any]] = []
    for task, split in SPLIT_FILES:
        if not split_available(task, split, data_dir):
            rows.append({"task": task, "split": split, "source": "absent"})
            continue
        ex = load_split(task, split, data_dir, quora_train)
        labels = pd.Series([e.label for e in ex], dtype=float)
        if split == "test":
            label_info = ""
        elif task == "sts":
            label_info = f"mean {labels.mean():.2f}, sd {labels.std():.2f}"
        else:  # class counts, e.g. "0:12627 1:7585"
            label_info = " ".join(f"{k:.0f}:{v}" for k, v in labels.value_counts().sort_index().items())
        rows.append({"task": task, "split": split, "source": ex.report.source, "examples": len(ex),
                     "skipped": ex.report.skipped,
                     "length_filtered": len(filter_by_length(ex)) if split == "train" else None,
                     "labels": label_info, "mean_chars": round(sum(len("".join(e.sentences)) for e in ex) / len(ex), 1)})
    return pd.DataFrame(rows).astype({"examples": "Int64", "skipped": "Int64", "length_filtered": "Int64"})


# ---------------------------------------------------------------- fetching


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        while chunk := fp.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_url(source: object) -> bool:
    return isinstance(source, str) and source.startswith(("http://", "https://", "file://"))


def _write_atomic(stream: BinaryIO, target: Path, expected: str | None, origin: str) -> None:
    """Stream into a temp file beside `target`, verify, then rename: a failure never leaves a partial file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise ChecksumError(f"checksum mismatch for {target.name} (from {origin}): "
                                f"expected sha256 {expected}, got {actual}")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _download(url: str, target: Path, expected: str | None) -> None:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        _write_atomic(response, target, expected, url)


def _mirror_manifest(source: Path | str | None, download: bool) -> dict[str, str]:
    """The mirror's SHA256SUMS as {relative path: sha256}; {} when it has none."""
    text = ""
    if isinstance(source, Path) and (source / "SHA256SUMS").is_file():
        text = (source / "SHA256SUMS").read_text(encoding="utf-8")
    elif _is_url(source) and download:
        try:
            with urllib.request.urlopen(f"{source}/SHA256SUMS", timeout=DOWNLOAD_TIMEOUT_S) as response:
                text = response.read().decode("utf-8")
        except (urllib.error.URLError, OSError):
            pass
    pairs = (line.split(maxsplit=1) for line in text.splitlines() if line.strip())
    return {name.strip().lstrip("*"): digest for digest, name in pairs}


def _folder_files(source: Path | str | None, manifest: dict[str, str]) -> list[str]:
    """Relative paths beyond the registry that the mirror offers: its docs, reference/ and nltk_data/."""
    if isinstance(source, Path):
        docs = [name for name in MIRROR_DOCS if (source / name).is_file()]
        return docs + sorted(p.relative_to(source).as_posix() for d in MIRROR_FOLDERS if (source / d).is_dir()
                             for p in (source / d).rglob("*") if p.is_file())
    return sorted(n for n in manifest if n.split("/")[0] in MIRROR_FOLDERS)


def nltk_data_dir(data_dir: str | Path | None = None) -> Path:
    """Where `fetch` puts the NLTK resources; point `NLTK_DATA` (or `nltk.data.path`) here."""
    return _resolve(data_dir) / "nltk_data"


def _fetch_nltk(nltk_dir: Path, download: bool, progress: bool) -> dict[str, str]:
    status = {}
    for name, sub in NLTK_RESOURCES.items():
        if (nltk_dir / sub).is_dir() or (nltk_dir / f"{sub}.zip").is_file():
            status[name] = "present"
        elif not download:
            status[name] = "missing (download disabled)"
        else:
            import nltk  # only when the mirror had no nltk_data/

            ok = nltk.download(name, download_dir=str(nltk_dir), quiet=not progress)
            status[name] = "downloaded" if ok else "missing (nltk.download failed)"
    return status


def _obtain(name: str, expected: str | None, target: Path, source: Path | str | None,
            download: bool) -> tuple[str, str]:
    """Try the mirror, then the course URL: ("copied"|"downloaded", origin), or ("unavailable", why)."""
    candidates: list[tuple[str, str]] = []
    if isinstance(source, Path) and (source / name).is_file():
        candidates.append(("copied", str(source / name)))
    if download and _is_url(source):
        candidates.append(("downloaded", f"{source}/{name}"))
    url = FILES.get(name, (None, None))[1]
    if download and url:
        candidates.append(("downloaded", url))
    errors = []
    for how, origin in candidates:
        try:
            if how == "copied":
                with open(origin, "rb") as stream:
                    _write_atomic(stream, target, expected, origin)
            else:
                _download(origin, target, expected)
            return how, origin
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:  # try the next source
            errors.append(f"{origin}: {err}")
    return "unavailable", "; ".join(errors) or "no source offers it"


def fetch(data_dir: str | Path | None = None, mirror: str | Path | None = None, download: bool = True,
          progress: bool = True) -> dict[str, Any]:
    """Fill `data_dir` with the course files (+ reference/, nltk_data/) and verify their sha256.

    Sources, per file: `mirror` (a folder or an http(s) URL; default `$MTLIB_DATA_MIRROR`, else the shared
    `../shared/data` beside the repo when it exists), then the course repository URL. `download=False`
    forbids all network access. Files already present with the right checksum are skipped. Raises
    ChecksumError on a mismatch and FileNotFoundError naming required files no source provided.
    """
    dest = _resolve(data_dir)
    dest.mkdir(parents=True, exist_ok=True)
    mirror = mirror or os.environ.get("MTLIB_DATA_MIRROR") or (SHARED_MIRROR if SHARED_MIRROR.is_dir() else None)
    source: Path | str | None = None
    if mirror is not None:
        source = str(mirror).rstrip("/") if _is_url(str(mirror)) else Path(mirror).expanduser()
        if isinstance(source, Path) and not source.is_dir():
            raise FileNotFoundError(f"data mirror folder {source} does not exist")
    manifest = _mirror_manifest(source, download)
    # A sha256 the registry lacks (the full Quora files) can still come from the mirror's SHA256SUMS.
    wanted = {name: sha or manifest.get(name) for name, (sha, _url) in FILES.items()}
    for rel in _folder_files(source, manifest):  # the registry pins only the course files
        wanted.setdefault(rel, manifest.get(rel))
    report: dict[str, Any] = {"data_dir": str(dest), "source": str(source) if source else "course repository",
                              "present": [], "copied": [], "downloaded": [], "unavailable": {}, "nltk": {}}
    for name, expected in wanted.items():
        target = dest / name
        if target.is_file() and (expected is None or sha256_file(target) == expected):
            report["present"].append(name)
            continue
        how, origin = _obtain(name, expected, target, source, download)
        if how in ("copied", "downloaded"):
            report[how].append(name)
            if progress:
                print(f"{how} {name} <- {origin}", flush=True)
        elif target.is_file():  # present but wrong, and no source could replace it
            raise ChecksumError(f"checksum mismatch for {target}: expected sha256 {expected}, "
                                f"got {sha256_file(target)}, and no source could replace it ({origin})")
        else:
            report["unavailable"][name] = origin
    report["nltk"] = _fetch_nltk(nltk_data_dir(dest), download, progress)
    missing = [n for n in report["unavailable"] if n in FILES and n not in OPTIONAL_FILES
               and not (n in QUORA_SUBSETS and (dest / "quora-train.csv").is_file())]
    if missing:
        raise FileNotFoundError(f"required data file(s) {', '.join(missing)} not found (source: {report['source']}; "
                                f"download={'on' if download else 'off'}). The Quora subset files exist only in "
                                "mirrors: set MTLIB_DATA_MIRROR to a folder or URL holding them.")
    return report
