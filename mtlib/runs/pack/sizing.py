"""How many runs a pack holds: as many as the device's free memory takes, measured now, with a margin.

A run in a pack keeps its parameters, gradients, AdamW's two moments, a combined step's ``[T, D]`` task
gradients and the update (``1 + 1 + 2 + T + 1`` copies of its parameters in fp32), and while one batch is
computed its activations: per example and layer about 24 hidden-sized vectors per token and the attention
probabilities and scores (two ``heads x L x L``; L the longest sequence a batch may hold), in fp32. The
estimate is printed beside the choice; ``--pack K`` sets it by hand.
"""

from __future__ import annotations

import psutil
import torch

from mtlib.config.run_config import RunConfig
from mtlib.machine.runtime import resolve_device

MARGIN = 0.7  # use at most this share of the free memory
MAX_TOKENS = 128  # the longest batch the course data gives after the 250-character cut (estimate's L)


def free_memory(device: torch.device) -> tuple[int, str]:
    """(bytes free now, where it was read)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"{torch.cuda.get_device_name(device)} free memory"
    return psutil.virtual_memory().available, "available host memory"


def run_bytes(cfg: RunConfig) -> int:
    """The estimated memory of one packed run of ``cfg`` (see the module's docstring)."""
    from transformers import AutoConfig

    from mtlib.model.backbones import minilm_path, tiny_config

    if cfg.backbone == "tiny-random":
        enc = tiny_config(30522)
    else:
        enc = AutoConfig.from_pretrained(str(minilm_path()) if cfg.backbone == "minilm-l6" else cfg.backbone)
    h, layers, heads = enc.hidden_size, enc.num_hidden_layers, enc.num_attention_heads
    params = enc.vocab_size * h + layers * (12 * h * h + 13 * h) + h * h  # embeddings, layers, pooler
    copies = 1 + 1 + 2 + len(cfg.tasks) + 1
    batch = max(cfg.batch_size[t] for t in cfg.tasks) * (2 if cfg.pair_mode == "concat_embed" else 1)
    activations = batch * layers * MAX_TOKENS * (24 * h + 2 * heads * MAX_TOKENS)
    return 4 * (copies * params + activations)


def pack_size(cfg: RunConfig, requested: int | None = None) -> tuple[int, str]:
    """(runs per pack, the line saying why)."""
    if requested is not None:
        return max(1, requested), f"{requested} runs per pack (--pack)"
    device = resolve_device(cfg.device)
    free, where = free_memory(device)
    per_run = run_bytes(cfg)
    size = max(1, int(free * MARGIN // per_run))
    return size, (
        f"{size} runs per pack: {where} {free / 2**30:.1f} GiB x {MARGIN:.0%} margin / "
        f"~{per_run / 2**30:.2f} GiB per run (estimated)"
    )
