"""A round's arithmetic: the members' forward/backward passes as one ``vmap`` over their stacked parameters.

Every member's parameters live in one ``[K, ...]`` tensor per parameter name (``Pack.stack``: each model's
``Parameter.data`` becomes its slice, so its own optimizer, ``load_state_dict`` and checkpoints work on it
unchanged; ``state_dict`` hands out copies, so a checkpoint never holds the other runs' weights).

A round's requests are grouped by (kind, task, batch size); a group's batches are padded to its longest
sequence (the attention mask hides the padding; keyed dropout hashes coordinates, so padding changes no mask)
and computed by ``vmap`` over ``functional_call`` of the first member's model, with the encoder's eager
attention and a 4D additive mask (``vmap`` cannot batch the mask checks of transformers' mask builder or
SDPA's kernels). A training request returns the loss and the gradient of every trainable parameter; an
evaluation request returns the outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad, vmap

from mtlib.machine.runtime import autocast
from mtlib.model.keyed_dropout import keyed_dropout


@dataclasses.dataclass
class Request:
    kind: str  # "train" (loss and gradients) or "eval" (outputs, no autograd)
    task: str
    batch: dict
    key: int | None  # keyed dropout's key (train)
    precision: str


@dataclasses.dataclass
class Trained:
    loss: Tensor  # 0-d, detached
    grads: dict[str, Tensor]  # parameter name -> gradient (a view of the group's [K, ...] gradient)


class PackedLoss:
    """A training loss whose gradient the pack has already computed: what ``BatchLoss`` returns in a pack.

    The steps treat it as a loss tensor: they divide it (Gradient Compromise), weigh it (loss weightings), read
    it (``item``) and call ``backward``, which adds the gradient, times those factors, to each ``.grad``
    (in place where one exists: a combined step's per-task rows)."""

    def __init__(self, trained: Trained, params: dict[str, torch.nn.Parameter], scale: float = 1.0):
        self.trained, self.params, self.scale = trained, params, scale

    def item(self) -> float:
        return float(self.trained.loss) * self.scale

    def __truediv__(self, divisor: float) -> "PackedLoss":
        return PackedLoss(self.trained, self.params, self.scale / divisor)

    def __mul__(self, factor) -> "PackedLoss":
        return PackedLoss(self.trained, self.params, self.scale * float(factor))

    __rmul__ = __mul__

    def backward(self) -> None:
        for name, g in self.trained.grads.items():
            p = self.params[name]
            if p.grad is None:  # the run's own slice of the group's gradient, copied only where not contiguous
                # (a slice of some vmapped gradients is strided, and fused AdamW on the CPU ignores strides)
                p.grad = g * self.scale if self.scale != 1.0 else g.contiguous()
            else:
                p.grad.add_(g, alpha=self.scale)


class Stack:
    """The members' parameters stacked along a run axis, in member order."""

    def __init__(self, models: dict[int, torch.nn.Module]):
        self.members = sorted(models)
        self.names = [n for n, _ in models[self.members[0]].named_parameters()]
        self.tensors: dict[str, Tensor] = {}
        for name in self.names:
            params = [dict(models[m].named_parameters())[name] for m in self.members]
            stacked = torch.stack([p.detach() for p in params])
            for k, p in enumerate(params):
                p.data = stacked[k]
            self.tensors[name] = stacked

    def of(self, members: list[int]) -> dict[str, Tensor]:
        """{name: [len(members), ...]}: the stack itself when it is exactly these members, else a copy."""
        if members == self.members:
            return self.tensors
        index = torch.tensor([self.members.index(m) for m in members], device=next(iter(self.tensors.values())).device)
        return {n: t.index_select(0, index) for n, t in self.tensors.items()}


def _copied_state(module, state_dict, prefix, local_metadata) -> None:
    """A packed model's state_dict holds copies: a view would save the whole stack with it."""
    for k, v in state_dict.items():
        if isinstance(v, Tensor) and v.data_ptr() != 0:
            state_dict[k] = v.clone()


def prepare_member(model: torch.nn.Module) -> None:
    """What a model needs to be computed in a pack: eager attention, 4D masks, copied state_dicts."""
    model.encoder.set_attn_implementation("eager")
    model.mask_4d = True
    model.unpadded = False  # vmap needs static shapes (packed runs are keyed, which keeps the padded layout anyway)
    model._register_state_dict_hook(_copied_state)


@contextlib.contextmanager
def dense_embeddings(model: torch.nn.Module):
    """Embedding tables with dense gradients inside (vmap has no sparse gradients; a combined step's buffer
    turns a dense table gradient into its row-sparse form itself)."""
    tables = [m for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse]
    for m in tables:
        m.sparse = False
    try:
        yield
    finally:
        for m in tables:
            m.sparse = True


def pad_to(t: Tensor, length: int, value: int = 0) -> Tensor:
    return F.pad(t, (0, length - t.shape[-1]), value=value) if t.shape[-1] < length else t


def _stack_encodings(encs: list[dict]) -> dict[str, Tensor]:
    length = max(e["input_ids"].shape[1] for e in encs)
    out = {}
    for key in encs[0]:
        if isinstance(encs[0][key], Tensor) and encs[0][key].dim() == 2:
            out[key] = torch.stack([pad_to(e[key], length) for e in encs])
    return out


def stack_batches(batches: list[dict]) -> dict:
    """The members' batches (one task, one batch size) as one batch with a run axis in front."""
    out = {"enc": _stack_encodings([b["enc"] for b in batches])}
    if "enc2" in batches[0]:
        out["enc2"] = _stack_encodings([b["enc2"] for b in batches])
    if "labels" in batches[0]:
        out["labels"] = torch.stack([b["labels"] for b in batches])
    return out


def _first_example(batch):
    if isinstance(batch, dict):
        return {k: _first_example(v) for k, v in batch.items()}
    return batch[:1] if isinstance(batch, Tensor) and batch.dim() > 0 else batch


class Compute:
    """Executes a round: ``run(requests, models) -> {member: Trained | Tensor | exception}``."""

    def __init__(self):
        self.stack: Stack | None = None
        self.used: dict[tuple, frozenset] = {}
        self.chunk: int | None = None  # runs computed at once, once the device ran out of memory for more

    def restack(self, models: dict[int, torch.nn.Module]) -> None:
        self.stack = Stack(models)

    def run(self, requests: dict[int, Request], models: dict[int, torch.nn.Module]) -> dict[int, Any]:
        if self.stack is None or any(m not in self.stack.members for m in requests):
            self.restack(models)
        elif len(self.stack.members) > 2 * len(models) and all(m in models for m in requests):
            self.restack(models)  # most members have left: stop copying their rows for every group
        groups: dict[tuple, list[int]] = {}
        for m, r in sorted(requests.items()):
            size = r.batch["enc"]["input_ids"].shape[0]
            groups.setdefault((r.kind, r.task, size, r.precision, r.key is None), []).append(m)
        results: dict[int, Any] = {}
        for (kind, task, _, precision, _), members in groups.items():
            compute = self._train if kind == "train" else self._eval
            for part in self._parts(members):
                results.update(self._fitting(compute, models, task, part, requests, precision))
        return results

    def _parts(self, members: list[int]) -> list[list[int]]:
        step = self.chunk or len(members)
        return [members[i : i + step] for i in range(0, len(members), step)]

    def _fitting(self, compute, models, task, members, requests, precision) -> dict[int, Any]:
        """``compute`` for ``members``; where the device runs out of memory, for each half of them (and every
        later group in parts of that size): a pack never ends in an out-of-memory crash of its runs."""
        try:
            return compute(models[members[0]], task, members, requests, precision)
        except torch.OutOfMemoryError as err:
            if len(members) == 1:
                return {members[0]: err}
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.chunk = len(members) // 2
            print(f"[pack] out of device memory for {len(members)} runs at once: {self.chunk} at a time", flush=True)
            out = {}
            for part in self._parts(members):
                out.update(self._fitting(compute, models, task, part, requests, precision))
            return out
        except Exception as err:  # noqa: BLE001 - a group's failure is its members'
            return dict.fromkeys(members, err)

    def _split(self, template, members, task: str | None = None, batch: dict | None = None):
        """(differentiated, constant, buffers): a training request differentiates the trainable parameters
        its task's forward uses; the others get no gradient, as in a run trained alone (an optimizer skips a
        parameter without one; a zero gradient would still move it)."""
        params = self.stack.of(members)
        trainable = {n for n, p in template.named_parameters() if p.requires_grad}
        if task is not None:
            trainable = self._used(template, task, batch, frozenset(trainable))
        buffers = dict(template.named_buffers())
        return (
            {n: t for n, t in params.items() if n in trainable},
            {n: t for n, t in params.items() if n not in trainable},
            buffers,
        )

    def _used(self, template, task: str, batch: dict, trainable: frozenset) -> frozenset:
        """The trainable parameters a forward pass of ``task`` reaches: found once per task by a probe of one
        example (eval mode, so no dropout draws)."""
        key = (task, trainable)
        if key not in self.used:
            probe = _first_example(batch)
            params = [(n, p) for n, p in template.named_parameters() if n in trainable]
            was_training = template.training
            template.eval()
            try:
                with torch.enable_grad(), dense_embeddings(template):
                    out = template(task, probe)
                    grads = torch.autograd.grad(out.float().sum(), [p for _, p in params], allow_unused=True)
            finally:
                template.train(was_training)
            self.used[key] = frozenset(n for (n, _), g in zip(params, grads) if g is not None)
        return self.used[key]

    def _train(self, template, task, members, requests, precision) -> dict[int, Trained]:
        trainable, frozen, buffers = self._split(template, members, task, requests[members[0]].batch)
        batch = stack_batches([requests[m].batch for m in members])
        keyed = requests[members[0]].key is not None
        keys = torch.tensor([requests[m].key if keyed else 0 for m in members], dtype=torch.int64)
        device = next(iter(trainable.values())).device

        def loss_of(train_params, frozen_params, batch, key):
            with keyed_dropout(key if keyed else None):
                out = functional_call(template, ({**train_params, **frozen_params}, buffers), (task, batch))
                loss = template.loss(task, out, batch["labels"])
            return loss, loss.detach()

        template.train()
        with torch.enable_grad(), autocast(device, precision), dense_embeddings(template):
            grads, losses = vmap(grad(loss_of, has_aux=True), randomness="error")(
                trainable, frozen, batch, keys.to(device)
            )
        return {m: Trained(losses[k], {n: g[k] for n, g in grads.items()}) for k, m in enumerate(members)}

    def _eval(self, template, task, members, requests, precision) -> dict[int, Tensor]:
        trainable, frozen, buffers = self._split(template, members)
        batch = stack_batches([requests[m].batch for m in members])
        device = next(iter(self.stack.tensors.values())).device

        def forward(params, batch):
            return functional_call(template, (params, buffers), (task, batch))

        template.eval()
        with torch.inference_mode(), autocast(device, precision):
            outputs = vmap(forward, randomness="error")({**trainable, **frozen}, batch)
        return {m: outputs[k] for k, m in enumerate(members)}
