"""``TaskGradients``: each task's gradient of the shared parameters in one preallocated ``[T, D]`` buffer."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


__all__ = ["TaskGradients"]


class TaskGradients:
    """One preallocated ``[T, D]`` float32 buffer holding each task's gradient of the shared parameters.

    Parameters that do not require grad are left out (frozen layers would only waste buffer space).
    ``begin(t)`` lets task t's backward accumulate straight into row t; ``store(t)`` finishes the row
    (copying gradients that landed elsewhere); ``gradients()`` returns the ``[T, D_active]`` view the
    combiners read; ``write(update)`` points each ``.grad`` at a view of one persistent update buffer.

    ``embeddings``: input embedding tables (``nn.Embedding``) among the parameters, stored row-sparse.
    A word-embedding table is half of a small BERT's parameters, yet a batch touches a few hundred of
    its ~30k rows: every other row of every task's gradient is exactly zero, adds nothing to any inner
    product and gets a zero update. So during ``begin``..``gradients`` the tables run with
    ``sparse=True`` and only the rows some task touched this update enter the buffer (after the dense
    parameters, in a region that grows when needed). The combination is the same mathematics as over
    the full flattened encoder, at a fraction of the memory traffic; the table's ``.grad`` handed to
    the optimizer is dense as usual.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        num_tasks: int,
        embeddings: Iterable[torch.nn.Module] = (),
        capacity_rows: int = 4096,
    ) -> None:
        unique: dict[int, torch.nn.Parameter] = {}
        for p in params:
            if p.requires_grad:
                unique.setdefault(id(p), p)  # tied weights appear once
        self.params: list[torch.nn.Parameter] = list(unique.values())
        if not self.params:
            raise ValueError("TaskGradients needs at least one parameter that requires grad")
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        device = self.params[0].device
        if any(p.device != device for p in self.params):
            raise ValueError("all shared parameters must live on one device")
        self.tables: list[torch.nn.Embedding] = []
        for module in embeddings:
            weight = getattr(module, "weight", None)
            if (
                isinstance(module, torch.nn.Embedding)
                and id(weight) in unique
                and weight.dtype == torch.float32
                and module.max_norm is None
                and all(m.weight is not weight for m in self.tables)
            ):
                self.tables.append(module)
        table_ids = {id(m.weight) for m in self.tables}
        self.dense_params = [p for p in self.params if id(p) not in table_ids]
        self.num_tasks = num_tasks
        self.dim = sum(p.numel() for p in self.params)  # the logical D: every shared parameter
        self.dense_dim = sum(p.numel() for p in self.dense_params)
        self._max_compact = sum(m.weight.numel() for m in self.tables)
        self._capacity = min(
            sum(min(capacity_rows, m.num_embeddings) * m.embedding_dim for m in self.tables), self._max_compact
        )
        self._sparse_flags = [m.sparse for m in self.tables]
        self._pending: list[list[Tensor | None]] = [[None] * len(self.tables) for _ in range(num_tasks)]
        empty = torch.empty(0, dtype=torch.long, device=device)
        self._rows: list[Tensor] = [empty] * len(self.tables)  # table rows in the buffer, this update
        self._written: list[Tensor] = [empty] * len(self.tables)  # rows nonzero in the table updates
        self._table_update = [torch.zeros_like(m.weight) for m in self.tables]
        self.active_dim = self.dense_dim
        self.sync = None  # N processes: sums the rows over ranks (mtlib.train.distributed.GradientSync)
        self._allocate(device)

    def _allocate(self, device: torch.device) -> None:
        width = self.dense_dim + self._capacity
        self.buffer = torch.zeros(self.num_tasks, width, dtype=torch.float32, device=device)
        self._update = torch.zeros(width, dtype=torch.float32, device=device)
        # Views are built once; split() returns views, so begin/store/write never allocate.
        sizes = [p.numel() for p in self.dense_params]
        self._row_views = [
            [chunk.view(p.shape) for chunk, p in zip(row[: self.dense_dim].split(sizes), self.dense_params)]
            for row in self.buffer
        ]
        self._update_views = [
            chunk.view(p.shape) for chunk, p in zip(self._update[: self.dense_dim].split(sizes), self.dense_params)
        ]

    def _grow(self, needed: int) -> None:
        """Enlarge the row-sparse region (rare: a batch with more distinct tokens than ever before)."""
        old = self.buffer
        self._capacity = min(max(2 * self._capacity, needed), self._max_compact)
        self._allocate(old.device)
        self.buffer[:, : self.dense_dim].copy_(old[:, : self.dense_dim])
        # Dense .grad tensors may still alias the old rows until write() re-points them: harmless.

    def _set_sparse(self, on: bool) -> None:
        for module, flag in zip(self.tables, self._sparse_flags):
            module.sparse = True if on else flag

    @torch.no_grad()
    def begin(self, task: int) -> None:
        """Zero row ``task`` and make each ``.grad`` a view of it, so the backward pass accumulates
        straight into the buffer (autograd adds in place into an existing ``.grad``): no copy after it.
        Embedding tables switch to sparse gradients until ``gradients()``."""
        self.buffer[task, : self.dense_dim].zero_()
        for p, view in zip(self.dense_params, self._row_views[task]):
            p.grad = view if p.dtype == view.dtype else None
        for module in self.tables:
            module.weight.grad = None
        self._set_sparse(True)

    @torch.no_grad()
    def store(self, task: int) -> None:
        """Finish row ``task`` from the shared parameters' current gradients (zeros where grad is None).
        Gradients that already live in the row (after ``begin``) are not copied again; an embedding
        table's gradient is taken (its ``.grad`` becomes None) and kept row-sparse."""
        views = self._row_views[task]
        pairs = [
            (v, p.grad)
            for v, p in zip(views, self.dense_params)
            if p.grad is not None and p.grad.data_ptr() != v.data_ptr()
        ]
        dst = [v for v, _ in pairs]
        src = [g for _, g in pairs]
        missing = [v for v, p in zip(views, self.dense_params) if p.grad is None]
        if dst:
            torch._foreach_copy_(dst, src)  # one fused pass instead of a copy_ per parameter
        if missing:
            torch._foreach_zero_(missing)
        for j, module in enumerate(self.tables):
            grad = module.weight.grad
            if grad is not None and not grad.is_sparse:  # dense: sparse=False, or a tied use elsewhere
                grad = grad.to_sparse(sparse_dim=1)
            self._pending[task][j] = grad
            module.weight.grad = None

    @torch.no_grad()
    def gradients(self) -> Tensor:
        """The ``[T, D_active]`` view of the buffer holding this update's task gradients: the dense
        parameters, then for each embedding table the rows any task touched (sorted by row id)."""
        if not self.tables:
            return self._summed(self.buffer)
        self._set_sparse(False)
        pending = [[None if g is None else g.coalesce() for g in row] for row in self._pending]
        device = self.buffer.device
        rows = []
        for j in range(len(self.tables)):
            ids = [row[j].indices()[0] for row in pending if row[j] is not None]
            rows.append(torch.unique(torch.cat(ids)) if ids else torch.empty(0, dtype=torch.long, device=device))
        if self.sync is not None:  # the rows any rank touched, so every rank lays the buffer out alike
            rows = self.sync.union_rows(rows)
        needed = sum(r.numel() * m.embedding_dim for r, m in zip(rows, self.tables))
        if needed > self._capacity:
            self._grow(needed)
        self.buffer[:, self.dense_dim : self.dense_dim + needed].zero_()
        offset = self.dense_dim
        for j, (module, ids) in enumerate(zip(self.tables, rows)):
            width = ids.numel() * module.embedding_dim
            for task, row in enumerate(pending):
                grad = row[j]
                if grad is not None:
                    block = self.buffer[task, offset : offset + width].view(ids.numel(), module.embedding_dim)
                    block.index_copy_(0, torch.searchsorted(ids, grad.indices()[0]), grad.values().float())
            offset += width
        self._rows = rows
        self._pending = [[None] * len(self.tables) for _ in range(self.num_tasks)]
        self.active_dim = offset
        return self._summed(self.buffer[:, :offset])

    def _summed(self, grads: Tensor) -> Tensor:
        """The rows summed over the ranks of a distributed run (as is on one process)."""
        if self.sync is not None:
            self.sync.reduce_rows(grads)
        return grads

    @torch.no_grad()
    def write(self, update: Tensor) -> None:
        """Make each shared parameter's ``.grad`` the matching slice of ``update`` (a ``[D_active]``
        vector laid out like ``gradients()``; ``[D]`` when there are no embedding tables)."""
        if update.shape != (self.active_dim,):
            raise ValueError(f"update must have shape ({self.active_dim},), got {tuple(update.shape)}")
        self._set_sparse(False)
        if update.data_ptr() != self._update.data_ptr():  # combiners can write into ``update_buffer``
            self._update[: self.active_dim].copy_(update)
        for p, view in zip(self.dense_params, self._update_views):
            if p.dtype != view.dtype:  # low-precision params: .grad must match their dtype
                p.grad = view.to(p.dtype)
            elif p.grad is None or p.grad.data_ptr() != view.data_ptr():
                # Aliasing is safe: _update is rewritten on every write and never read by store().
                p.grad = view
        offset = self.dense_dim
        for j, (module, ids) in enumerate(zip(self.tables, self._rows)):
            table = self._table_update[j]
            table.index_fill_(0, self._written[j], 0.0)  # only the rows the last write made nonzero
            width = ids.numel() * module.embedding_dim
            table.index_copy_(0, ids, self._update[offset : offset + width].view(ids.numel(), module.embedding_dim))
            self._written[j] = ids
            module.weight.grad = table
            offset += width

    @property
    def update_buffer(self) -> Tensor:
        """The persistent ``[D_active]`` vector ``write`` hands to the parameters: pass it as a combiner's ``out``."""
        return self._update[: self.active_dim]

    @torch.no_grad()
    def zero_grads(self) -> None:
        """Zero the shared parameters' gradients in place (before each task's backward)."""
        grads = [p.grad for p in self.dense_params if p.grad is not None]
        if grads:
            torch._foreach_zero_(grads)
        for module in self.tables:
            module.weight.grad = None
