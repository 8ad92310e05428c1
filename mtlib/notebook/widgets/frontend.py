"""Where is the kernel running: a person's notebook frontend (show the panel) or papermill (skip it)."""

from __future__ import annotations

import os
from typing import Any


# ------------------------------------------------------------------ where are we running?
def _shell():
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return None
    return get_ipython()


def interactive_frontend() -> bool:
    """True when a person's notebook frontend (JupyterLab, Notebook, VS Code) can show and click widgets.

    Papermill sets no flag in the kernel, but it executes through nbclient, which sends every
    execute_request with ``allow_stdin=False``; JupyterLab, Notebook, VS Code and Colab send ``True``.
    ipykernel keeps the current cell's flag on ``kernel._allow_stdin``. So, in order:
    ``MTLIB_INTERACTIVE=0|1`` decides if set; a non-empty ``PAPERMILL`` env var means batch; no IPython
    kernel (plain python, pytest, terminal IPython) means no widgets; otherwise the kernel's stdin flag.
    """
    forced = os.environ.get("MTLIB_INTERACTIVE", "").strip().lower()
    if forced:
        return forced not in ("0", "false", "no", "off")
    if os.environ.get("PAPERMILL", "").strip().lower() not in ("", "0", "false"):
        return False
    kernel = getattr(_shell(), "kernel", None)
    if kernel is None:
        return False
    return bool(getattr(kernel, "_allow_stdin", True))


def show_panel(panel, enabled: bool = True):
    """Display a panel (or build one from a factory) in an interactive frontend; else say why not.

    Returns the panel when shown, None when skipped (under papermill the factory is never called, so no
    widget state lands in the executed notebook).
    """
    if not enabled or not interactive_frontend():
        why = "turned off" if not enabled else "no interactive frontend (papermill or plain python)"
        print(f"[mtlib] ablation panel skipped: {why}; the parameters cell drives the runs.")
        return None
    from mtlib.notebook.widgets.panel import AblationPanel

    panel = panel() if callable(panel) and not isinstance(panel, AblationPanel) else panel
    from IPython.display import display

    display(panel)
    return panel


def ablation_panel(
    profile: str,
    row: str | dict | None = None,
    controls: list[str] | str | None = None,
    enabled: bool = True,
    **kwargs: Any,
):
    """Build and show an AblationPanel where a person can use it; None under papermill."""
    from mtlib.notebook.widgets.panel import AblationPanel

    return show_panel(lambda: AblationPanel(profile, row=row, controls=controls, **kwargs), enabled)
