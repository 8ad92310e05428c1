"""mtlib.data: parsing (fixtures), counts on the real course files; mtlib.data.sources (through its re-exports in
mtlib.data): fetching from folders and over HTTP."""

from __future__ import annotations

import functools
import hashlib
import http.server
import logging
import shutil
import sys
import threading
import types
from pathlib import Path

import pytest

import mtlib.data.sources as mfetch
from mtlib import data
from mtlib.config.run_config import REPO_ROOT
from mtlib.data import Example, filter_by_length, load_split, read_task_file

FIXTURES = Path(__file__).parent / "fixtures"
MINI = FIXTURES / "mini_data"
SHARED = data.SHARED_MIRROR  # ../shared/data beside the repo
needs_shared = pytest.mark.skipif(not (SHARED / "ids-sst-train.csv").is_file(), reason="no shared data folder")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- parsing (fixtures)


def test_sst_parsing_skips_and_counts_bad_labels(caplog):
    with caplog.at_level(logging.INFO, logger="mtlib.data"):  # expected in the course files: a note
        ex = load_split("sst", "train", MINI)
    assert [e.id for e in ex] == ["sst0a", "sst1b", "sst4e"]  # ids lower-cased
    assert ex[0] == Example("sst0a", ("a lovely film , really .",), 3)  # SST: lower().strip() only
    assert ex.report.rows == 5 and ex.report.skipped == 2
    assert "line 4" in ex.report.reasons[0] and "'five'" in ex.report.reasons[0]
    assert "line 5" in ex.report.reasons[1] and "not a number" in ex.report.reasons[1]
    assert "ids-sst-train.csv" in caplog.text and "skipped 2" in caplog.text


def test_quora_parsing_follows_course_loader():
    ex = load_split("para", "dev", MINI)
    assert [e.id for e in ex] == ["qd1", "qd2", "qd5"]
    assert ex.report.skipped == 2  # the two stray-quote rows, as in the real quora-dev.csv
    assert ex[1].sentences == ('what is "this" thing ,really ?', "what 's this thing ?")
    assert ex[2].sentences == ("is it spaced ?", "is it spaced ?")  # whitespace collapsed
    assert [e.label for e in ex] == [0, 1, 1] and all(type(e.label) is int for e in ex)


def test_sts_labels_are_floats_and_test_files_have_none():
    train = load_split("sts", "train", MINI)
    assert [e.label for e in train] == [2.0, 0.8, 4.75]
    assert train[2].sentences == ("a man is playing a guitar .", "a man plays the guitar .")
    test = load_split("sts", "test", MINI)
    assert test[0].label is None and test[0].id == "stt1"


def test_sst_test_header_with_two_index_columns():
    ex = load_split("sst", "test", MINI)
    assert [(e.id, e.label) for e in ex] == [("sstt1", None), ("sstt2", None)]
    assert ex[1].sentences == ("wasabi is a good place to start .",)


def test_wrong_header_names_file_found_and_expected_columns():
    with pytest.raises(ValueError) as err:
        read_task_file("sst", FIXTURES / "bad-header.csv")
    message = str(err.value)
    assert "bad-header.csv" in message and "'text'" in message and "'sentence'" in message
    assert "'sentiment'" in message


def test_unknown_task_or_split_lists_allowed_values():
    with pytest.raises(ValueError, match="sst, para, sts"):
        load_split("qqp", "train", MINI)
    with pytest.raises(ValueError, match="train, dev, test"):
        load_split("sst", "validation", MINI)
    with pytest.raises(ValueError, match="head, head\\+extra"):
        load_split("para", "train", MINI, quora_train="all")


def test_missing_file_names_file_and_fetch_command(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_split("sst", "train", tmp_path)
    assert "ids-sst-train.csv" in str(err.value) and "python -m mtlib data fetch" in str(err.value)
    with pytest.raises(FileNotFoundError, match="quora-test-student.csv"):
        load_split("para", "test", MINI)
    assert not data.split_available("para", "test", MINI)
    assert data.split_available("para", "train", MINI)


def test_quora_train_subsets_and_full_file(tmp_path):
    head = load_split("para", "train", MINI, quora_train="head")
    both = load_split("para", "train", MINI, quora_train="head+extra")
    assert [e.id for e in head] == ["qh1", "qh3"] and len(both) == 4
    assert both.report.skipped == 1 and both.report.files == data.QUORA_SUBSETS
    assert data.quora_train_source(MINI, "head+extra") == "subset head+extra (4 usable of 141,506)"
    shutil.copytree(MINI, tmp_path, dirs_exist_ok=True)
    shutil.copy(MINI / "quora-train-subset-extra.csv", tmp_path / "quora-train.csv")
    full = load_split("para", "train", tmp_path, quora_train="head")  # the full file wins when present
    assert [e.id for e in full] == ["re1", "re2"]
    assert full.report.source.startswith("full quora-train.csv")


def test_filter_by_length_counts_normalised_characters():
    ex = [
        Example("a", ("x" * 250,), 1),
        Example("b", ("x" * 251,), 1),
        Example("c", ("x" * 200, "y" * 50), 1),
        Example("d", ("x" * 200, "y" * 51), 1),
    ]
    assert [e.id for e in filter_by_length(ex)] == ["a", "c"]
    assert [e.id for e in filter_by_length(ex, max_chars=300)] == ["a", "b", "c", "d"]


def test_example_list_pickles_with_its_report():
    import pickle

    ex = load_split("sst", "dev", MINI)
    back = pickle.loads(pickle.dumps(ex))
    assert back == ex and back.report == ex.report


# ---------------------------------------------------------------- real course files


@needs_shared
def test_real_file_counts():
    assert len(load_split("sst", "train", SHARED)) == 8544
    assert len(load_split("sst", "dev", SHARED)) == 1101
    assert len(load_split("sst", "test", SHARED)) == 2210
    dev = load_split("para", "dev", SHARED)
    assert len(dev) == 20212 and dev.report.skipped == 2
    assert len(load_split("sts", "train", SHARED)) == 6040
    assert len(load_split("sts", "dev", SHARED)) == 863


@needs_shared
def test_real_length_filter_and_quora_subsets():
    assert len(filter_by_length(load_split("sst", "train", SHARED))) == 8510
    assert len(filter_by_length(load_split("sts", "train", SHARED))) == 5634
    both = load_split("para", "train", SHARED, quora_train="head+extra")
    assert len(both) == 56331 and both.report.skipped == 2
    assert sum(e.label for e in both) == 20315  # data README: 20,315 duplicates
    assert len(load_split("para", "train", SHARED, quora_train="head")) == 14137
    assert data.quora_train_source(SHARED) == "subset head+extra (56,331 usable of 141,506)"


@needs_shared
def test_registry_matches_shared_checksums():
    sums = dict(line.split()[::-1] for line in (SHARED / "SHA256SUMS").read_text().splitlines())
    for name, (digest, _url) in data.FILES.items():
        assert digest == sums.get(name), name


# ---------------------------------------------------------------- fetching


@pytest.fixture
def fake_registry(monkeypatch):
    """Point FILES at the fixture files; the optional course files stay unknown and unreachable.

    Patched in mtlib.data.sources, where `fetch` looks the registry up (mtlib.data only re-exports it).
    """
    registry = {p.name: (sha(p), None) for p in sorted(MINI.glob("*.csv"))}
    registry.update({name: (None, None) for name in data.OPTIONAL_FILES})
    monkeypatch.setattr(mfetch, "FILES", registry)
    return registry


def test_fetch_from_mirror_folder_then_skips_present(tmp_path, fake_registry):
    dest = tmp_path / "data"
    report = data.fetch(dest, mirror=MINI, download=False, progress=False)
    assert sorted(report["copied"]) == sorted(p.name for p in MINI.glob("*.csv"))
    assert set(report["unavailable"]) == data.OPTIONAL_FILES
    assert report["nltk"]["wordnet"].startswith("missing")
    assert all(sha(dest / n) == sha(MINI / n) for n in report["copied"])
    assert len(load_split("sst", "train", dest)) == 3
    again = data.fetch(dest, mirror=MINI, download=False, progress=False)
    assert again["copied"] == [] and len(again["present"]) == len(report["copied"])


def test_fetch_replaces_a_corrupt_file(tmp_path, fake_registry):
    (tmp_path / "sts-dev.csv").write_text("garbage")
    report = data.fetch(tmp_path, mirror=MINI, download=False, progress=False)
    assert "sts-dev.csv" in report["copied"] and sha(tmp_path / "sts-dev.csv") == sha(MINI / "sts-dev.csv")


def test_fetch_checksum_mismatch_names_file_and_hashes(tmp_path, monkeypatch, fake_registry):
    wrong = "0" * 64
    monkeypatch.setitem(mfetch.FILES, "sts-dev.csv", (wrong, None))
    with pytest.raises(data.ChecksumError) as err:
        data.fetch(tmp_path, mirror=MINI, download=False, progress=False)
    message = str(err.value)
    assert "sts-dev.csv" in message and wrong in message and sha(MINI / "sts-dev.csv") in message
    assert not (tmp_path / "sts-dev.csv").exists() and not list(tmp_path.glob(".*.part"))


def test_fetch_missing_required_file_is_named(tmp_path, fake_registry):
    mirror = tmp_path / "mirror"
    shutil.copytree(MINI, mirror)
    (mirror / "ids-sst-dev.csv").unlink()
    with pytest.raises(FileNotFoundError, match="ids-sst-dev.csv"):
        data.fetch(tmp_path / "data", mirror=mirror, download=False, progress=False)


def test_fetch_copies_mirror_folders_checked_by_sha256sums(tmp_path, fake_registry):
    mirror = tmp_path / "mirror"
    shutil.copytree(MINI, mirror)
    tagger = mirror / "nltk_data" / "taggers" / "averaged_perceptron_tagger_eng"
    tagger.mkdir(parents=True)
    (tagger / "weights.json").write_text("{}")
    (mirror / "nltk_data" / "corpora" / "wordnet").mkdir(parents=True)
    (mirror / "nltk_data" / "corpora" / "wordnet" / "lexnames").write_text("00 adj.all 3\n")
    (mirror / "reference").mkdir()
    (mirror / "reference" / "x.csv").write_text("id \t Predicted_Sentiment \n")
    (mirror / "SHA256SUMS").write_text(f"{sha(mirror / 'reference' / 'x.csv')}  reference/x.csv\n")
    report = data.fetch(tmp_path / "data", mirror=mirror, download=False, progress=False)
    assert {"reference/x.csv", "SHA256SUMS", "nltk_data/corpora/wordnet/lexnames"} <= set(report["copied"])
    assert report["nltk"] == {"wordnet": "present", "averaged_perceptron_tagger_eng": "present"}
    (mirror / "SHA256SUMS").write_text(f"{'1' * 64}  reference/x.csv\n")
    with pytest.raises(data.ChecksumError, match="reference/x.csv|x.csv"):
        data.fetch(tmp_path / "data2", mirror=mirror, download=False, progress=False)


def test_fetch_checks_optional_files_against_mirror_sha256sums(tmp_path, fake_registry):
    mirror = tmp_path / "mirror"
    shutil.copytree(MINI, mirror)
    shutil.copy(MINI / "quora-dev.csv", mirror / "quora-train.csv")  # registry sha256: unknown
    (mirror / "SHA256SUMS").write_text(f"{'2' * 64}  quora-train.csv\n")
    with pytest.raises(data.ChecksumError, match="quora-train.csv"):
        data.fetch(tmp_path / "data", mirror=mirror, download=False, progress=False)
    (mirror / "SHA256SUMS").write_text(f"{sha(mirror / 'quora-train.csv')}  quora-train.csv\n")
    report = data.fetch(tmp_path / "data", mirror=mirror, download=False, progress=False)
    assert "quora-train.csv" in report["copied"]


@pytest.fixture
def http_mirror(tmp_path):
    """A local HTTP server serving a copy of the fixture data (plus a SHA256SUMS and a reference file)."""
    root = tmp_path / "served"
    shutil.copytree(MINI, root)
    (root / "reference").mkdir()
    (root / "reference" / "sst-dev-output.csv").write_text("id \t Predicted_Sentiment \nsstd1 , 4 \n")
    (root / "SHA256SUMS").write_text(
        f"{sha(root / 'reference' / 'sst-dev-output.csv')}  reference/sst-dev-output.csv\n"
    )

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def fake_nltk(monkeypatch, calls: list) -> None:
    """Stand in for the nltk module (no network, no slow import); records nltk.download calls."""

    def download(name: str, download_dir: str, quiet: bool = False) -> bool:
        calls.append((name, download_dir))
        (Path(download_dir) / data.NLTK_RESOURCES[name]).mkdir(parents=True)
        return True

    monkeypatch.setitem(sys.modules, "nltk", types.SimpleNamespace(download=download))


def test_fetch_downloads_course_urls(tmp_path, monkeypatch, fake_registry, http_mirror):
    registry = {name: (digest, f"{http_mirror}/{name}") for name, (digest, _) in fake_registry.items()}
    monkeypatch.setattr(mfetch, "FILES", registry)
    monkeypatch.setattr(mfetch, "SHARED_MIRROR", tmp_path / "no-shared-data")
    monkeypatch.delenv("MTLIB_DATA_MIRROR", raising=False)
    calls: list = []
    fake_nltk(monkeypatch, calls)
    dest = tmp_path / "data"
    report = data.fetch(dest, progress=False)
    assert report["source"] == "course repository"
    assert sorted(report["downloaded"]) == sorted(p.name for p in MINI.glob("*.csv"))
    assert "404" in report["unavailable"]["quora-train.csv"]  # optional: reported, not raised
    assert [name for name, _ in calls] == list(data.NLTK_RESOURCES)
    assert all(Path(d) == dest / "nltk_data" for _, d in calls)
    assert report["nltk"]["wordnet"] == "downloaded"
    assert load_split("sts", "dev", dest)[1].label == 4.6
    assert not list(dest.glob(".*.part"))


def test_fetch_from_url_mirror_gets_subsets_and_listed_folders(tmp_path, monkeypatch, fake_registry, http_mirror):
    fake_nltk(monkeypatch, [])
    monkeypatch.setenv("MTLIB_DATA_MIRROR", http_mirror)
    dest = tmp_path / "data"
    report = data.fetch(dest, progress=False)
    assert report["source"] == http_mirror
    assert "quora-train-subset-extra.csv" in report["downloaded"]
    assert "reference/sst-dev-output.csv" in report["downloaded"]
    assert (dest / "reference" / "sst-dev-output.csv").read_text().startswith("id \t")


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch, fake_registry, http_mirror):
    monkeypatch.setattr(mfetch, "FILES", {"sts-dev.csv": ("f" * 64, f"{http_mirror}/sts-dev.csv")})
    monkeypatch.setattr(mfetch, "SHARED_MIRROR", tmp_path / "no-shared-data")
    monkeypatch.delenv("MTLIB_DATA_MIRROR", raising=False)
    with pytest.raises(data.ChecksumError, match="f{64}"):
        data.fetch(tmp_path / "data", download=True, progress=False)
    assert list((tmp_path / "data").iterdir()) == []


def test_fetch_rejects_missing_mirror_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        data.fetch(tmp_path, mirror=tmp_path / "does-not-exist", download=False, progress=False)


def test_default_data_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MTLIB_DATA_DIR", str(tmp_path))
    assert data.default_data_dir() == tmp_path
    monkeypatch.delenv("MTLIB_DATA_DIR")
    assert data.default_data_dir() == REPO_ROOT / "data"
