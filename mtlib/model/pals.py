"""Projected Attention Layers (PALs) added to a `transformers` encoder with BERT-style layers.

BERT, RoBERTa and DeBERTa-v2/v3 share the layout PALs attach to (`encoder.layer[l].attention.output`, a
`LayerNorm(Dropout(Dense(x)) + input_tensor)` module); `add_pals` refuses any other layout with one line.

Stickland & Murray (2019), "BERT and PALs: Projected Attention Layers for Efficient Adaptation in Multi-Task
Learning", ICML 2019, https://arxiv.org/abs/1902.02671.

In every layer l, a task-specific low-rank self-attention runs in parallel with the layer's own self-attention:

    attention_output = LayerNorm(Dropout(Dense(SA(h))) + PAL_t(h) + h),   PAL_t(h) = U_t(MHA_{l,t}(D_t h))

D_t: Linear(H -> r) and U_t: Linear(r -> H) are per task and shared by all layers; MHA_{l,t} is per layer and per
task, on r dims (q, k, v Linear(r, r); no output projection, since U_t already maps back). Defaults r = 132 with
12 heads of 11, as the original (docs/original.md §6).

How it attaches: no backbone module is renamed or replaced, so a plain checkpoint loads with only `pals.*` keys
missing. Two forward pre-hooks per layer: one on `BertAttention` keeps the mask the layer receives, one on
`BertSelfOutput` rewrites its residual input `h` to `h + PAL_t(h)`. `BertSelfOutput` computes
`LayerNorm(Dropout(Dense(x)) + input_tensor)`, which gives the formula above.

Deviations from the original (`bert.py:92-132,185-227`):
- U_t weight *and bias* start at zero, so a freshly wrapped model gives exactly the plain model's outputs. The
  original zeroed D_t/U_t weights only and set q/k/v weights to 0 with biases 1/sqrt(11), so every layer got the
  constant U_t.bias added ("identity" only approximately). D_t and q/k/v here use BERT's init (normal with
  std=initializer_range, zero bias), so their gradients are non-zero once U_t moves.
- The PAL term is added after the attention's Dense/Dropout (the paper's LN(h + SA(h) + PAL(h))); the original
  added it to SA(h) before W_ao and dropout.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn


class PALSelfAttention(nn.Module):
    """Multi-head self-attention on r dims, one per layer and task, named like transformers' BertSelfAttention."""

    def __init__(self, size: int, num_heads: int, attention_probs_dropout_prob: float) -> None:
        super().__init__()
        self.num_attention_heads = num_heads
        self.attention_head_size = size // num_heads
        self.query = nn.Linear(size, size)
        self.key = nn.Linear(size, size)
        self.value = nn.Linear(size, size)
        self.dropout = nn.Dropout(attention_probs_dropout_prob)

    def forward(self, hidden_states: Tensor, attention_mask: Tensor | None) -> Tensor:
        batch, length, _ = hidden_states.shape
        shape = (batch, length, self.num_attention_heads, self.attention_head_size)
        query_layer = self.query(hidden_states).view(shape).transpose(1, 2)
        key_layer = self.key(hidden_states).view(shape).transpose(1, 2)
        value_layer = self.value(hidden_states).view(shape).transpose(1, 2)

        attention_scores = query_layer @ key_layer.transpose(-1, -2) / math.sqrt(self.attention_head_size)
        if attention_mask is not None:
            attention_scores = attention_scores + attention_mask
        attention_probs = self.dropout(attention_scores.softmax(dim=-1))
        context_layer = (attention_probs @ value_layer).transpose(1, 2)
        return context_layer.reshape(batch, length, -1)


def _additive_mask(mask: Any, dtype: torch.dtype) -> Tensor | None:
    """The layer's mask as an additive float mask broadcastable to [B, heads, L, L].

    transformers 5.x hands BERT/RoBERTa layers None when nothing is padded, a 4D additive float mask under the
    eager implementation, a 4D bool mask (True = attend) under sdpa, and the 2D 0/1 padding mask under flash
    attention; DeBERTa-v2 layers get a 4D integer 0/1 mask (1 = attend).
    """
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"PALs cannot read an attention mask of type {type(mask).__name__}; "
            "load the model with attn_implementation='eager' or 'sdpa'"
        )
    if mask.dim() == 2:
        mask = mask[:, None, None, :].bool()
    if not mask.dtype.is_floating_point:
        mask = mask.bool()
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    return mask.to(dtype)


class PALs(nn.Module):
    """All PAL parameters of one encoder: `down`/`up` per task (shared by layers), `attention[l][task]`.

    Registered on the model as `bert.pals`; `active_task` (None = plain model) selects which task's PAL runs.
    """

    def __init__(self, config: Any, tasks: Sequence[str], size: int = 132, num_heads: int = 12) -> None:
        super().__init__()
        if size % num_heads != 0:
            raise ValueError(f"PAL size {size} must be divisible by num_heads {num_heads}")
        tasks = list(tasks)
        if not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be non-empty and distinct, got {tasks}")
        for task in tasks:
            if not task or "." in task:
                raise ValueError(f"task names become parameter names and cannot be empty or contain '.': {task!r}")
        self.tasks = tuple(tasks)
        self.size = size
        self.num_heads = num_heads
        hidden = config.hidden_size
        self.down = nn.ModuleDict({t: nn.Linear(hidden, size) for t in tasks})
        self.up = nn.ModuleDict({t: nn.Linear(size, hidden) for t in tasks})
        self.attention = nn.ModuleList(
            nn.ModuleDict({t: PALSelfAttention(size, num_heads, config.attention_probs_dropout_prob) for t in tasks})
            for _ in range(config.num_hidden_layers)
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=config.initializer_range)
                nn.init.zeros_(module.bias)
        for up in self.up.values():
            nn.init.zeros_(up.weight)  # exact neutrality at the start (bias already zero)
        self.active_task: str | None = None
        self._layer_masks: dict[int, Any] = {}

    def pal_output(self, layer_idx: int, hidden_states: Tensor, attention_mask: Any) -> Tensor:
        """PAL_t(h) = U_t(MHA_{l,t}(D_t h)) for the active task t."""
        task = self.active_task
        assert task is not None
        low_rank = self.down[task](hidden_states)
        mask = _additive_mask(attention_mask, low_rank.dtype)
        return self.up[task](self.attention[layer_idx][task](low_rank, mask))

    # Hooks are bound methods (through functools.partial) so that copy.deepcopy of the model points the copy's
    # hooks at the copy's PALs rather than at this one.
    def _keep_mask(self, layer_idx: int, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.active_task is not None:
            self._layer_masks[layer_idx] = args[1] if len(args) > 1 else kwargs.get("attention_mask")

    def _add_pal(self, layer_idx: int, module: nn.Module, args: tuple) -> tuple | None:
        if self.active_task is None:
            return None  # plain model: leave the inputs untouched
        attention_states, input_tensor = args
        mask = self._layer_masks.pop(layer_idx, None)
        return attention_states, input_tensor + self.pal_output(layer_idx, input_tensor, mask)


def _bert_layers(bert: nn.Module) -> nn.ModuleList:
    """The encoder's layers, if each has the attention-output module PALs hook into; else one clear line."""
    layers = getattr(getattr(bert, "encoder", None), "layer", None)
    output = getattr(getattr(layers[0], "attention", None), "output", None) if layers else None
    if not all(hasattr(output, name) for name in ("dense", "LayerNorm")):
        kind = getattr(getattr(bert, "config", None), "model_type", "?")
        raise ValueError(
            f"PALs need BERT-style layers (encoder.layer[i].attention.output, as in BERT, RoBERTa, "
            f"DeBERTa-v2/v3); this encoder ({type(bert).__name__}, model type {kind!r}) has none: "
            "set pals: false or choose another backbone"
        )
    return layers


def add_pals(bert: nn.Module, tasks: Sequence[str], size: int = 132, num_heads: int = 12) -> PALs:
    """Add PALs for `tasks` to `bert` (in place), registered as `bert.pals`, on the model's device and dtype.

    The model output is unchanged until U_t moves away from zero. No task is active after this call:
    use `set_pal_task` or `pal_task`.
    """
    if any(isinstance(m, PALs) for m in bert.modules()):
        raise ValueError("this model already has PALs")
    layers = _bert_layers(bert)
    if len(layers) != bert.config.num_hidden_layers:
        raise ValueError(f"model has {len(layers)} layers but config says {bert.config.num_hidden_layers}")
    reference = next(bert.parameters())
    pals = PALs(bert.config, tasks, size, num_heads).to(device=reference.device, dtype=reference.dtype)
    bert.pals = pals
    for idx, layer in enumerate(layers):
        layer.attention.register_forward_pre_hook(partial(pals._keep_mask, idx), with_kwargs=True)
        layer.attention.output.register_forward_pre_hook(partial(pals._add_pal, idx))
    return pals


def find_pals(model: nn.Module) -> PALs:
    """The PALs module inside `model` (an encoder or anything containing one)."""
    found = [m for m in model.modules() if isinstance(m, PALs)]
    if len(found) != 1:
        raise ValueError(f"expected exactly one PALs module in the model, found {len(found)} (call add_pals first)")
    return found[0]


def _activate(pals: PALs, task: str | None) -> None:
    if task is not None and task not in pals.tasks:
        raise ValueError(f"unknown PAL task {task!r}; allowed: {', '.join(pals.tasks)} or None")
    pals.active_task = task
    pals._layer_masks.clear()


def set_pal_task(model: nn.Module, task: str | None) -> None:
    """Choose the task whose PAL runs in following forwards; None turns PALs off (the plain model)."""
    _activate(find_pals(model), task)


@contextmanager
def pal_task(model: nn.Module, task: str | None) -> Iterator[None]:
    """`with pal_task(bert, "sst"): ...` runs the block with that task's PAL and restores the previous task."""
    pals = find_pals(model)  # one walk over the modules per forward, not three
    previous = pals.active_task
    _activate(pals, task)
    try:
        yield
    finally:
        _activate(pals, previous)


def pal_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every PAL parameter in `model` (D/U of all tasks and every layer's attentions)."""
    return list(find_pals(model).parameters())


def freeze_all_but_pals(model: nn.Module) -> int:
    """Freeze every parameter of `model` except the PALs (the original's best recipe: train only PALs at the
    end, docs/original.md §6). Returns the number of trainable scalars left."""
    keep = {id(p) for p in pal_parameters(model)}
    for param in model.parameters():
        param.requires_grad_(id(param) in keep)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def pal_parameter_count(model: nn.Module) -> dict[str, int]:
    """Scalar counts: `down_up` (the shared D_t, U_t of all tasks), `attention` (all layers and tasks), `total`.

    With H hidden, r = size, L layers, T tasks: down_up = T (2 H r + r + H), attention = 3 L T (r^2 + r).
    """
    pals = find_pals(model)
    down_up = sum(p.numel() for p in pals.down.parameters()) + sum(p.numel() for p in pals.up.parameters())
    attention = sum(p.numel() for p in pals.attention.parameters())
    return {"down_up": down_up, "attention": attention, "total": down_up + attention}
