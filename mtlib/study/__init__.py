"""The study: experiments rows and the one config resolver, batch runs and the papermill driver, results,
tables, plots and the ablation widgets. Everything here reads run directories through ``mtlib.rundir``."""

import sys as _sys

if "ipykernel" in _sys.modules:  # in a notebook: skipped malformed rows as one quiet line, not a red box
    from mtlib.study.notes import show_data_notes

    show_data_notes()
