"""The epoch bar: text outside a kernel; in a kernel a widget whose output is emptied when it closes, so a saved
notebook keeps no output of a closed widget ("Error displaying widget: model not found" when reopened)."""

from __future__ import annotations

import IPython.display

from mtlib.train import progress_bar


class Handle:
    def __init__(self):
        self.updates = []

    def update(self, obj, raw=False):
        self.updates.append((obj, raw))


def test_in_a_kernel_the_closed_bar_leaves_an_empty_output(monkeypatch):
    handles = []

    def display(obj, display_id=None):
        assert display_id is True
        handles.append(Handle())
        return handles[-1]

    monkeypatch.setattr(IPython.display, "display", display)
    monkeypatch.setattr(progress_bar, "_in_kernel", lambda: True)
    progress_bar._notebook_bar_class.cache_clear()
    try:
        assert list(progress_bar.epoch_bar(range(3), "epoch 1/2", True)) == [0, 1, 2]
    finally:
        progress_bar._notebook_bar_class.cache_clear()
    (handle,) = handles
    assert handle.updates == [({"text/plain": ""}, True)]


def test_outside_a_kernel_a_text_bar_or_nothing(capsys):
    assert list(progress_bar.epoch_bar(range(2), "x", False)) == [0, 1]
    assert capsys.readouterr().err == ""
    assert not progress_bar._in_kernel()
