"""Ablation panel: ipywidgets bound to RunConfig keys, a Run button and a live dev curve.

A panel starts from a profile and (optionally) a row of ``params/experiments.yaml`` and shows the toggles
of one notebook. ``panel.config()`` is the RunConfig the widgets describe, built by the same
``resolve_config`` the batch runs use; Run trains it in the kernel through ``mtlib.train.run``.

Under papermill the panel is skipped (``interactive_frontend``): the notebook's parameters drive the same
``run()`` call, and no widget state is written into the executed notebook.
"""

from mtlib.notebook.widgets.frontend import ablation_panel, interactive_frontend, show_panel
from mtlib.notebook.widgets.controls import CONTROLS, PAL_FINETUNE_ONLY, PAL_FROM_START, PRESETS
from mtlib.notebook.widgets.panel import AblationPanel

__all__ = [
    "ablation_panel",
    "interactive_frontend",
    "show_panel",
    "AblationPanel",
    "CONTROLS",
    "PRESETS",
    "PAL_FINETUNE_ONLY",
    "PAL_FROM_START",
]
