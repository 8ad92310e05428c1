"""The bar over one epoch's updates: a widget in a notebook kernel, text elsewhere, and gone when the epoch ends.

A closed widget bar (tqdm's ``leave=False``) would leave its output behind with its model gone: a notebook
saved with its widget state reopens with "Error displaying widget: model not found" where every epoch's bar
was. In a kernel the bar is therefore shown through a display handle, and replaced by nothing when it closes.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable


def epoch_bar(iterable: Iterable, desc: str, enabled: bool):
    """tqdm over ``iterable`` (nothing shown when not ``enabled``)."""
    if enabled and _in_kernel():
        return _notebook_bar_class()(iterable, desc=desc, leave=False)
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, disable=not enabled, leave=False)


def _in_kernel() -> bool:
    if "ipykernel" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


@functools.cache
def _notebook_bar_class():  # made on first use: IPython and ipywidgets are loaded in a kernel only
    from IPython.display import display
    from tqdm.notebook import tqdm as notebook_tqdm

    class NotebookBar(notebook_tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, display=False, **kwargs)
            self.handle = display(self.container, display_id=True)

        def close(self):
            super().close()
            if getattr(self, "handle", None) is not None:
                self.handle.update({"text/plain": ""}, raw=True)  # the output stays, without the closed widget
                self.handle = None

    return NotebookBar
