"""Training one run: the trainer, its phases and steps, evaluation and predictions, the run's data, identity
and state, shared leading phases, torchrun. ``mtlib.train.trainer.run`` trains a RunConfig into its run
directory."""
