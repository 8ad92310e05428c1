"""The offline NLTK resources EDA augmentation needs (WordNet, the POS tagger): where they are, and a clear
error when they are not. Nothing is downloaded here (``mtlib.data.sources.fetch`` installs them)."""

from __future__ import annotations

import os
from pathlib import Path

from mtlib.data.sources import SHARED_MIRROR, nltk_data_dir

# NLTK resources nlpaug's WordNet synonym augmenter needs (name -> path inside nltk_data).
NLTK_RESOURCES = {
    "wordnet": "corpora/wordnet",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng/",
}


class NLTKDataError(FileNotFoundError):
    """The offline NLTK resources (WordNet, POS tagger) are not where we look for them."""


def _missing_resources(nltk_dir: Path | None) -> list[str]:
    """Resources not found in `nltk_dir`, or anywhere on `nltk.data.path` when it is None."""
    import nltk

    missing = []
    for name, resource in NLTK_RESOURCES.items():
        try:
            nltk.data.find(resource, paths=None if nltk_dir is None else [str(nltk_dir)])
        except LookupError:
            missing.append(name)
    return missing


def ensure_nltk_data(data_dir: str | os.PathLike | None = None) -> Path:
    """Point NLTK at `<data_dir>/nltk_data` and check WordNet and the POS tagger are there.

    With no `data_dir`, look in the default data folder (`$MTLIB_DATA_DIR`, else `<repo>/data`) and
    then in the shared `../shared/data` beside the repo. Never downloads: nlpaug would call `nltk.download` on a miss.
    Returns the nltk_data folder used; raises `NLTKDataError` naming what is missing.
    """
    if data_dir is not None:
        candidates = [Path(data_dir) / "nltk_data"]
    else:
        candidates = [nltk_data_dir(), SHARED_MIRROR / "nltk_data"]

    problems = []
    for nltk_dir in candidates:
        missing = _missing_resources(nltk_dir) if nltk_dir.is_dir() else list(NLTK_RESOURCES)
        if not missing:
            import nltk

            nltk_dir = nltk_dir.resolve()
            if str(nltk_dir) not in nltk.data.path:
                nltk.data.path.insert(0, str(nltk_dir))
            env = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
            if str(nltk_dir) not in env:  # for subprocesses (e.g. papermill kernels)
                os.environ["NLTK_DATA"] = os.pathsep.join([str(nltk_dir), *env])
            return nltk_dir
        problems.append(f"{nltk_dir}: missing {', '.join(missing)}")
    raise NLTKDataError(
        "NLTK data for EDA augmentation not found (" + "; ".join(problems) + "). "
        "Run `python -m mtlib data fetch` to install it; nothing is downloaded at augmentation time."
    )
