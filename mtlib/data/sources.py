"""Course data files: the registry (names, sha256, URLs), where they live, and fetching them.

`fetch` fills the data folder from a mirror (a folder or URL; by default the project's shared copy) or the
course repository, verifying every file's sha256. Parsing and loading are in `mtlib.data`, which re-exports
this module's public names.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

REPO_ROOT = Path(__file__).resolve().parents[2]  # mtlib/data/fetch.py -> the repository
SHARED_MIRROR = REPO_ROOT.parent / "shared" / "data"  # the project's read-only copy, used when present
FETCH_COMMAND = "python -m mtlib data fetch"
COURSE_URL = "https://raw.githubusercontent.com/gpoesia/minbert-default-final-project/main/data/"
DOWNLOAD_TIMEOUT_S = 60.0


def default_data_dir() -> Path:
    """`$MTLIB_DATA_DIR`, else `<repo root>/data` (gitignored; filled by `fetch`). Read at call time."""
    env = os.environ.get("MTLIB_DATA_DIR")
    return Path(env).expanduser() if env else REPO_ROOT / "data"


# ---------------------------------------------------------------- registry

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
    name: (sha, None if name in QUORA_SUBSETS else COURSE_URL + name) for name, sha in _SHA256.items()
}
MIRROR_FOLDERS = ("reference", "nltk_data")  # copied as well; checked against the mirror's SHA256SUMS if any
MIRROR_DOCS = ("README.md", "SHA256SUMS")  # copied unverified from a mirror folder, so data/ documents itself
NLTK_RESOURCES = {
    "wordnet": "corpora/wordnet",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng",
}


class ChecksumError(ValueError):
    """A data file's sha256 differs from the registry's (or the mirror's SHA256SUMS)."""


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """`data_dir` as a Path (`~` expanded), or `default_data_dir()` when None."""
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


# ---------------------------------------------------------------- fetching


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        while chunk := fp.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file_cached(path: str | Path, digest=sha256_file) -> str:
    """``digest(path)`` for large files looked up often (a backbone's weights, WordNet), computed again whenever
    the file changed: the key holds the inode and the change time (ctime), which every write updates and no
    program can set back, unlike the size and modification time."""
    st = os.stat(path)
    return _digest_cached(digest, str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@functools.lru_cache(maxsize=1024)
def _digest_cached(digest, path: str, *stat) -> str:
    return digest(path)


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
            out.flush()
            os.fsync(out.fileno())  # the rename below must not land before the data
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise ChecksumError(
                f"checksum mismatch for {target.name} (from {origin}): expected sha256 {expected}, got {actual}"
            )
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
        return docs + sorted(
            p.relative_to(source).as_posix()
            for d in MIRROR_FOLDERS
            if (source / d).is_dir()
            for p in (source / d).rglob("*")
            if p.is_file()
        )
    return sorted(n for n in manifest if n.split("/")[0] in MIRROR_FOLDERS)


def nltk_data_dir(data_dir: str | Path | None = None) -> Path:
    """Where `fetch` puts the NLTK resources; point `NLTK_DATA` (or `nltk.data.path`) here."""
    return resolve_data_dir(data_dir) / "nltk_data"


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


def _obtain(
    name: str, expected: str | None, target: Path, source: Path | str | None, download: bool
) -> tuple[str, str]:
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


def fetch(
    data_dir: str | Path | None = None, mirror: str | Path | None = None, download: bool = True, progress: bool = True
) -> dict[str, Any]:
    """Fill `data_dir` with the course files (+ reference/, nltk_data/) and verify their sha256.

    Sources, per file: `mirror` (a folder or an http(s) URL; default `$MTLIB_DATA_MIRROR`, else the shared
    `../shared/data` beside the repo when it exists), then the course repository URL. `download=False`
    forbids all network access. Files already present with the right checksum are skipped. Raises
    ChecksumError on a mismatch and FileNotFoundError naming required files no source provided.
    """
    dest = resolve_data_dir(data_dir)
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
    report: dict[str, Any] = {
        "data_dir": str(dest),
        "source": str(source) if source else "course repository",
        "present": [],
        "copied": [],
        "downloaded": [],
        "unavailable": {},
        "nltk": {},
    }
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
            raise ChecksumError(
                f"checksum mismatch for {target}: expected sha256 {expected}, "
                f"got {sha256_file(target)}, and no source could replace it ({origin})"
            )
        else:
            report["unavailable"][name] = origin
    report["nltk"] = _fetch_nltk(nltk_data_dir(dest), download, progress)
    missing = [
        n
        for n in report["unavailable"]
        if n in FILES and n not in OPTIONAL_FILES and not (n in QUORA_SUBSETS and (dest / "quora-train.csv").is_file())
    ]
    if missing:
        raise FileNotFoundError(
            f"required data file(s) {', '.join(missing)} not found (source: {report['source']}; "
            f"download={'on' if download else 'off'}). The Quora subset files exist only in "
            "mirrors: set MTLIB_DATA_MIRROR to a folder or URL holding them."
        )
    return report
