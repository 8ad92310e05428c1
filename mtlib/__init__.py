"""mtlib: multitask fine-tuning of one BERT encoder on SST-5, Quora and STS-B.

A run config in, a run directory out: see ``mtlib.config.run_config.RunConfig`` and ``mtlib.train.run``.
"""

__version__ = "0.1.0"

TASKS = ("sst", "para", "sts")
