"""The study: experiments rows and the one config resolver, batch runs and the papermill driver, results,
tables, plots and the ablation widgets. Everything here reads run directories through ``mtlib.rundir``.
Importing it changes nothing: a notebook's first call (``notebook_params.check_parameters``) sets up what a
kernel needs."""
