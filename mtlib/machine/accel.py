"""The fast paths a run takes on its device: the fused AdamW, TF32 matmuls on CUDA, ``compile: true``.

Measured on a 2-core AVX-512-BF16 EPYC with MiniLM (``python -m mtlib bench train`` prints the ratios):
torch's fused AdamW takes ~1/4 of the foreach one's time, a fifth of a MiniLM step before. ``torch.compile``
costs more to compile than it saves in a quick run there, so ``compile`` is off by default.
"""

from __future__ import annotations

import torch

FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # torch >= 2.4 has a fused AdamW kernel for these


def adamw_options(device: torch.device) -> dict:
    """The AdamW implementation for parameters on ``device``: fused where torch has it, else foreach (both
    compute the same update up to rounding)."""
    return {"fused": True} if device.type in FUSED_ADAMW_DEVICES else {"foreach": True}


def configure_backends(device: torch.device) -> None:
    """TF32 for the fp32 matmuls left on CUDA (bf16/fp16 autocast covers the rest); nothing on a CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.fp32_precision = "tf32"  # torch >= 2.9's API; the CPU's oneDNN setting untouched
        torch.backends.cudnn.conv.fp32_precision = "tf32"


def prepare_model(model: torch.nn.Module, device: torch.device, compile: bool) -> None:
    """The device's backend settings; with ``compile``, ``torch.compile`` on the encoder in place (its parameter
    names, checkpoints and hooks stay as they are), dynamic shapes since every batch has its own length."""
    configure_backends(device)
    if compile:
        model.encoder.compile(dynamic=True)
