"""Every figure the notebooks show. Each function returns a matplotlib Figure; ``save`` writes it as PNG.

Histories are run directories (``history.jsonl`` inside) or lists of history rows as
``mtlib.rundir.read_history`` returns them. Task colours are the same in every figure (``TASK_COLORS``).
Split by idea: ``_style`` (backend, colours, ``save``), ``data`` (notebook 01), ``training`` (curves,
schedules, gradients), ``results`` (results bars), ``claims`` (the claims' forest plot), ``predictions``
(confusion matrices and the STS scatter of a run's dev predictions); every public name is importable from ``mtlib.results.plots``.
Figures are made with pyplot, so a notebook shows each one once at the end of its cell; outside a
notebook the non-interactive Agg backend is used.
"""

from mtlib.results.plots._style import (
    PAIR_COLORS,
    SST_CLASSES,
    TASK_COLORS,
    TASK_NAMES,
    X_LABELS,
    History,
    save,
    save_per_run,
)
from mtlib.results.plots.data import (
    class_distributions,
    length_distributions,
    length_filter_summary,
    quora_availability,
)
from mtlib.results.plots.claims import claims_forest
from mtlib.results.plots.methods import methods_overview
from mtlib.results.plots.predictions import confusion_counts, dev_predictions, prediction_panels
from mtlib.results.plots.results import results_bars
from mtlib.results.plots.training import (
    compromise_parts,
    conflict_diagnostics,
    dev_curves,
    gradient_toy,
    observed_task_counts,
    speed_curves,
    task_ratios,
)

__all__ = [
    "PAIR_COLORS",
    "SST_CLASSES",
    "TASK_COLORS",
    "TASK_NAMES",
    "X_LABELS",
    "History",
    "save",
    "save_per_run",
    "methods_overview",
    "class_distributions",
    "length_filter_summary",
    "length_distributions",
    "quora_availability",
    "dev_curves",
    "speed_curves",
    "task_ratios",
    "observed_task_counts",
    "conflict_diagnostics",
    "gradient_toy",
    "compromise_parts",
    "results_bars",
    "claims_forest",
    "prediction_panels",
    "dev_predictions",
    "confusion_counts",
]
