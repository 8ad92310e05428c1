"""Keyed dropout: every dropout mask a function of (a key, the dropout call's number, the element's coordinates).

``torch``'s dropout draws from a generator: a mask depends on the generator's state and on the tensor's whole
shape. That is fine for one run, but K runs trained as one batched model (``mtlib.runs.packed``) share one
generator and pad their batches to a common length, so no run could get the masks it draws alone. Under
``dropout_rng: keyed`` every ``F.dropout`` call inside ``keyed_dropout(key)`` instead keeps an element when a
counter-based hash (splitmix64) of (key, call number, element coordinates) falls below ``1 - p``:

- the key is the run's own (``keyed_seed(seed, "batch", task, batch index)``), so masks are paired across
  rows trained with the same seed, whatever the other runs of a pack are;
- coordinates, not flat offsets, are hashed: a token's mask is the same whether its batch was padded to 40
  or to 64 tokens, so a run trained alone and the same run trained in a pack draw the same masks, bit for bit;
- it is made of integer tensor ops, so it works under ``torch.func.vmap`` with one key per run.

Attention-probability dropout must go through ``F.dropout`` for this: runs with keyed dropout use transformers'
``eager`` attention (SDPA draws its dropout inside the kernel and is refused here).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

_M1 = 0xBF58476D1CE4E5B9 - 2**64  # splitmix64's multipliers as signed int64 (torch wraps on overflow)
_M2 = 0x94D049BB133111EB - 2**64
_GOLDEN = 0x9E3779B97F4A7C15 - 2**64


def _shr(z: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 (torch's is arithmetic)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _mix(z: Tensor) -> Tensor:
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def keyed_uniform(key: Tensor, call: int, shape: torch.Size, device) -> Tensor:
    """Uniform [0, 1) numbers of ``shape`` (float32), each a hash of (key, call, its coordinates)."""
    h = _mix(key.to(torch.int64) + torch.full((), call, dtype=torch.int64, device=device) * _GOLDEN)
    for dim, size in enumerate(shape):
        index = torch.arange(size, dtype=torch.int64, device=device).view([-1] + [1] * (len(shape) - dim - 1))
        h = _mix(h + (index + 1) * _GOLDEN)
    return _shr(h, 40).to(torch.float32) * (1.0 / (1 << 24))


class KeyedDropout(TorchFunctionMode):
    """Inside: ``F.dropout`` draws its mask from ``keyed_uniform(key, n, shape)`` (n: the call's number)."""

    def __init__(self, key: Tensor):
        super().__init__()
        self.key, self.calls = key, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.dropout:
            return self._dropout(*args, **kwargs)
        if func is F.scaled_dot_product_attention and kwargs.get("dropout_p", 0.0):
            raise RuntimeError(
                "dropout_rng: keyed needs the encoder's eager attention (SDPA draws its own dropout masks)"
            )
        return func(*args, **kwargs)

    def _dropout(self, input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
        if not training or p == 0.0:
            return input
        self.calls += 1
        keep = keyed_uniform(self.key, self.calls, input.shape, input.device) >= p
        return input * keep.to(input.dtype) * (1.0 / (1.0 - p))


def keyed_dropout(key: Tensor | int | None):
    """The context in which a forward pass draws keyed dropout masks (nothing when ``key`` is None)."""
    if key is None:
        return contextlib.nullcontext()
    if not isinstance(key, Tensor):
        key = torch.tensor(key, dtype=torch.int64)
    return KeyedDropout(key)
