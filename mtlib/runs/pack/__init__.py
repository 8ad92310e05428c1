"""Packed runs: K runs of one configuration (their seeds differ) trained in one process as one batched model.

Each run keeps everything that makes it a run: its own Trainer, run directory, batches, sampler, gradient
method state, optimizer, early stopping, checkpoints and resume point. Only the arithmetic of its forward and
backward passes is shared: the runs take turns on one thread at a time (``turns``), each hands its next
forward/backward to the pack, and when every live run has handed one over, the pack computes them as one
``torch.func.vmap`` over the runs' stacked parameters (``compute``). A run packed so equals the run trained
alone (tests/test_packed.py); ``engine`` is the executor's engine that forms the packs.
"""
