"""Expected data notes are one quiet stdout line per distinct note; warnings stay loud (mtlib.notebook.notes)."""

import logging

import pytest

from mtlib.data import read_task_file
from mtlib.notebook.notes import LOGGER, show_data_notes


@pytest.fixture(autouse=True)
def quiet_notes():
    """What a notebook's first call (parameters.check_parameters) does in a kernel; removed afterwards (it is process-wide)."""
    log = logging.getLogger(LOGGER)
    saved = (list(log.handlers), log.level)
    log.handlers.clear()
    handler = show_data_notes()
    yield handler
    log.handlers[:] = saved[0]
    log.setLevel(saved[1])


def test_a_skipped_row_is_one_quiet_line_once(tmp_path, capsys):
    path = tmp_path / "quora-tiny.csv"
    path.write_text(
        "\tid\tsentence1\tsentence2\tis_duplicate\n0\ta\tHi?\tHello?\t1.0\n1\tb\tYes?\tNo?\t\n", encoding="utf-8"
    )
    assert len(read_task_file("para", path)) == 1
    out, err = capsys.readouterr()
    assert out.count("\n") == 1 and out.startswith("[data] quora-tiny.csv: skipped 1 malformed row(s) of 2")
    assert err == ""
    read_task_file("para", path)  # the same note again (every run of a notebook reads the file): not repeated
    assert capsys.readouterr() == ("", "")


def test_warnings_of_the_data_layer_are_not_made_quiet(capsys, caplog):
    logging.getLogger("mtlib.data.parse").warning("a real problem")
    assert "[data]" not in capsys.readouterr().out  # not turned into a quiet line
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == ["a real problem"]
