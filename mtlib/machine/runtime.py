"""The machine a run executes on: device and precision choice, autocast, seeding."""

from __future__ import annotations

import random
from contextlib import contextmanager, nullcontext

import numpy as np
import torch

from mtlib.machine.capability import auto_choice

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        usable = f"auto, cpu or cuda:0..cuda:{count - 1}" if count else "auto or cpu"
        raise ValueError(
            f"config: key 'device' has value {name!r}, but this machine has {count} usable CUDA "
            f"device(s); expected {usable}"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"config: key 'device' has value {name!r}, but MPS is not available here; expected auto or cpu"
        )
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":  # by measured capability (mtlib.machine.capability), not by brand
        return auto_choice(device).precision
    if precision not in PRECISIONS:
        raise ValueError(f"config: key 'precision' has value {precision!r}; expected {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            "config: key 'precision' has value 'fp16', which needs a CUDA device; expected bf16 or fp32 on CPU"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"config: key 'precision' has value 'bf16', but {torch.cuda.get_device_name(device)} has no "
            "bf16 support; expected fp16, fp32 or auto"
        )
    return precision


def precision_reason(precision: str, device: torch.device) -> str:
    """Why a run trains in its precision (for metrics.json)."""
    return auto_choice(device).reason if precision == "auto" else f"precision: {precision} set in the config"


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextmanager
def casts_kept(precision: str):
    """Inside, autocast keeps each weight's low-precision copy until the block ends, however many autocast
    regions (a combined step's task batches, SMART's extra passes) open and close in it: the weights are cast
    once per update, not once per batch. autocast clears its cache when its outermost region closes; this block
    counts as an enclosing one (the optimizer must step after it: the copies are of the weights before)."""
    if precision == "fp32":
        yield
        return
    torch.autocast_increment_nesting()
    try:
        yield
    finally:
        if torch.autocast_decrement_nesting() == 0:
            torch.clear_autocast_cache()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
