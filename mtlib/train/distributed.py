"""One run on N processes: ``torchrun --nproc-per-node N -m mtlib run ...`` (torch.distributed: gloo on CPU,
NCCL on CUDA; a world of one is a plain run and touches none of this).

Every rank builds the same model, draws the same task sequence and the same batches (same seeds); each batch of
b examples is cut into N contiguous shards, and rank r's loss is its shard's mean weighted by ``n_r / b``, so
the sum over ranks is the 1-process loss of the whole batch (a plain mean of per-rank means is not, when the
shards differ in size). Gradients are summed over ranks *before* anything combines them:

- single-task steps: every trainable gradient, one flat all-reduce (ordinary data parallelism);
- combined steps (PCGrad, GradVac, compromise): each task's ``[D]`` row of ``TaskGradients``, so the
  gradient method sees the global per-task gradients and runs identically on every rank (same generator,
  same GradVac EMA); the row-sparse embedding rows use the union of the rows any rank touched; the heads
  (and PALs) get their own task's summed gradient.

Every rank applies the same update and keeps a bitwise-identical model, so every rank evaluates the dev set
itself (identical scores, no communication). Rank 0 owns the run directory (lock, files, checkpoints); the
other ranks see it through ``ReplicaDirectory``, which reads and never writes. ``last.pt`` holds every rank's
RNG state and the world size: it resumes under the same world size and refuses another one.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from mtlib.rundir import CheckpointError, RunDirectory
from mtlib.rundir.files import FAILED, LAST, PREDICTIONS

TIMEOUT_ENV = "MTLIB_DIST_TIMEOUT"  # seconds a collective waits for the other ranks (default 1800)


class RankLost(ConnectionError):
    """A collective failed: another rank died or was stopped."""


def launched() -> bool:
    """Started by torchrun (or another launcher setting WORLD_SIZE) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank_device(device: torch.device) -> torch.device:
    """This rank's device (``cuda:LOCAL_RANK`` on CUDA); under a launcher, starts the process group once."""
    if not launched():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=int(os.environ.get(TIMEOUT_ENV, "1800")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    return device


def on_this_rank(cfg, callback):
    """(config, callback) as this rank uses them: progress output and callbacks on rank 0 only."""
    if rank() == 0:
        return cfg, callback
    return dataclasses.replace(cfg, progress=False), None


def _collective(what: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except RuntimeError as err:  # DistBackendError, DistNetworkError: a peer closed its connections
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise RankLost(
            f"rank {rank()} of {world_size()} lost the other processes during {what} ({first}); a rank "
            "died or was stopped. Start the job again (torchrun --max-restarts N does it by itself): it "
            "resumes from the run's last.pt"
        ) from None


# ---------------------------------------------------------------------------------------------- batches
@dataclasses.dataclass
class BatchShard:
    """This rank's contiguous part of every batch, and the weight that makes the summed loss exact."""

    rank: int
    world: int
    comm_seconds: float = 0.0  # time inside the loss all-reduces (the communication benchmark reads it)

    def take(self, examples: list) -> list:
        n = len(examples)
        if n < self.world:
            raise ValueError(
                f"a batch of {n} examples cannot be split across {self.world} processes; use a "
                f"batch_size of at least {self.world} or fewer processes"
            )
        start, stop = shard_bounds(n, self.world, self.rank)
        return examples[start:stop]

    def global_loss(self, loss: Tensor, part: int, whole: int) -> Tensor:
        """Backward of the result gives this rank's share of the global gradient; its value is the global loss
        (so history rows and the non-finite check are the same on every rank)."""
        share = loss * (part / whole)
        total = share.detach().clone()
        t = time.perf_counter()
        _collective("the loss all-reduce", dist.all_reduce, total)
        self.comm_seconds += time.perf_counter() - t
        return share + (total - share.detach())


def shard_bounds(n: int, world: int, r: int) -> tuple[int, int]:
    """[start, stop) of rank r's shard of n items: sizes differ by at most one, the larger ones first."""
    base, extra = divmod(n, world)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


# ---------------------------------------------------------------------------------------------- gradients
class GradientSync:
    """Sums gradients over ranks: the parameters outside ``TaskGradients`` (``private``: every trainable
    parameter of a single-task step; the heads and PALs of a combined step), and the rows of the buffer."""

    def __init__(self, private: list[torch.nn.Parameter]):
        self.private = private
        self.comm_seconds = 0.0  # time inside all-reduces (the communication benchmark reads it)

    @torch.no_grad()
    def reduce_private(self) -> None:
        grads = [p.grad for p in self.private if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce instead of one per tensor
        self._all_reduce([flat], "the gradient all-reduce")
        torch._foreach_copy_(grads, [t.view_as(g) for t, g in zip(flat.split([g.numel() for g in grads]), grads)])

    @torch.no_grad()
    def reduce_rows(self, rows: Tensor) -> None:
        """Sum the ``[T, D_active]`` per-task gradients over ranks, in place (each row is contiguous)."""
        self._all_reduce(list(rows.unbind(0)), "the per-task gradient all-reduce")

    def union_rows(self, rows: list[Tensor]) -> list[Tensor]:
        """Per embedding table: the sorted ids of the rows any rank touched (each rank passes its own)."""
        if not rows:
            return rows
        device = rows[0].device
        sizes = torch.tensor([r.numel() for r in rows], dtype=torch.long, device=device)
        every = [torch.empty_like(sizes) for _ in range(world_size())]
        t = time.perf_counter()
        _collective("the row-id exchange", dist.all_gather, every, sizes)
        width = int(torch.stack(every).sum(1).max())
        mine = torch.full((width,), -1, dtype=torch.long, device=device)
        mine[: int(sizes.sum())] = torch.cat(rows)
        gathered = [torch.empty_like(mine) for _ in every]
        _collective("the row-id exchange", dist.all_gather, gathered, mine)
        self.comm_seconds += time.perf_counter() - t
        out = []
        for j in range(len(rows)):
            ids = [g[int(s[:j].sum()) : int(s[: j + 1].sum())] for g, s in zip(gathered, every)]
            out.append(torch.unique(torch.cat(ids)))
        return out

    def _all_reduce(self, tensors: list[Tensor], what: str) -> None:
        t = time.perf_counter()
        works = [_collective(what, dist.all_reduce, x, async_op=True) for x in tensors]
        for w in works:
            _collective(what, w.wait)
        self.comm_seconds += time.perf_counter() - t


def attach(phase, model, seed: int) -> None:
    """Make a freshly built phase exact across ranks (nothing on one process): shard its batches, sum its
    gradients, and give each rank its own dropout stream (restored from ``last.pt`` when the phase resumes)."""
    if world_size() == 1:
        return
    step, r, world = phase.step, dist.get_rank(), world_size()
    step.batch_loss.shard = BatchShard(r, world)
    task_grads = getattr(step, "task_grads", None)
    shared = {id(p) for p in task_grads.params} if task_grads is not None else set()
    step.sync = GradientSync([p for p in model.parameters() if p.requires_grad and id(p) not in shared])
    if task_grads is not None:
        task_grads.sync = step.sync
    if step.batch_loss.smart_weight > 0:  # SMART noise has this shard's shape: kept off the combiner's generator
        step.batch_loss.generator = torch.Generator().manual_seed(seed + 7 * phase.index + 1_000_003 * r)
    if r:  # rank 0 keeps the 1-process stream; the others draw their own dropout masks
        torch.manual_seed(seed + 7 * phase.index + 1_000_003 * r)


# ---------------------------------------------------------------------------------------------- checkpoints
def rng_state(device: torch.device) -> dict:
    """The RNG part of ``last.pt``: this rank's state, and on N processes every rank's and the world size."""
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.empty(0),
    }
    if world_size() > 1:
        ranks = [None] * world_size()
        _collective("the checkpoint's RNG gather", dist.all_gather_object, ranks, dict(state))
        state.update(world_size=world_size(), ranks=ranks)
    return state


def restore_rng(rng: dict, device: torch.device, where: Path) -> None:
    saved = int(rng.get("world_size", 1))
    if saved != world_size():
        raise CheckpointError(
            f"checkpoint {where} was written by a run on {saved} process(es), this job has "
            f"{world_size()}: resume it with `torchrun --nproc-per-node {saved}` (in all), or "
            f"delete {where} to start the run over"
        )
    mine = rng["ranks"][dist.get_rank()] if saved > 1 else rng
    torch.set_rng_state(mine["torch"])
    if device.type == "cuda" and mine["cuda"].numel():  # dropout on the GPU
        torch.cuda.set_rng_state(mine["cuda"], device)


# ---------------------------------------------------------------------------------------------- run directory
def run_directory(path: Path) -> RunDirectory:
    """Rank 0 (or a plain run): the run directory; another rank: a ``ReplicaDirectory`` of it."""
    return ReplicaDirectory(path, rank()) if rank() else RunDirectory(path)


class ReplicaDirectory(RunDirectory):
    """The run directory as a rank other than 0 sees it: it reads rank 0's files (``metrics.json``, the
    ``last.pt`` it resumes from) and writes nothing there. Its best models stay in memory (rank 0 writes the
    same ones to disk), so a phase hand-over never waits for rank 0's file; prediction files go to a private
    scratch folder removed at the end."""

    def __init__(self, path: str | Path, rank_index: int):
        super().__init__(path)
        self.rank = rank_index
        self.scratch = Path(tempfile.gettempdir()) / f"mtlib-rank{rank_index}-{os.getpid()}"
        self._models: dict[str, dict] = {}

    def lock(self) -> "ReplicaDirectory":
        return self  # rank 0 holds the lock for the whole job

    def unlock(self) -> None:
        pass

    def write_text(self, name: str, text: str) -> Path:
        return self.path / name

    def write_json(self, name: str, data) -> Path:
        return self.path / name

    def append_history(self, row: dict) -> None:
        pass

    def truncate_history(self, lines: int) -> int:
        return lines

    def remove_leftovers(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    @property
    def failed(self) -> Path:
        return self.scratch / FAILED

    @property
    def predictions(self) -> Path:
        self.scratch.mkdir(parents=True, exist_ok=True)
        return self.scratch / PREDICTIONS

    def save_checkpoint(self, path: str | Path, state: dict) -> Path:
        if Path(path).name != LAST:
            self._models[str(path)] = {k: v.detach().clone() for k, v in state["model"].items()}
        return Path(path)

    def model_state(self, path: str | Path, map_location="cpu", remedy: str = "") -> dict:
        kept = self._models.get(str(path))
        return kept if kept is not None else super().model_state(path, map_location, remedy)
