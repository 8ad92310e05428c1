"""Training one run: the trainer and its step kinds, samplers, gradient methods, SMART, evaluation, the run's
data and identity. ``from mtlib.train import run`` trains a RunConfig into its run directory."""


def __getattr__(name: str):
    # lazy: the leaf modules (samplers, gradients, smart) are imported by mtlib.config, the trainer imports it
    if name in ("run", "Trainer"):
        from mtlib.train import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
