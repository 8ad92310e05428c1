"""Leading phases shared between runs: a run whose first phases are, setting for setting, another run's starts
where that run handed over to its next phase, instead of training them again.

Most rows of the study begin with the same individual-pretraining phase (the heads on a frozen encoder, one
seed, the same data): 19 of the quick workbook's 31 runs. What a later phase reads of the ones before it is
the state at the hand-over: the model the last of them handed on, the batch streams, the RNG, the counters,
and the history rows they wrote. A run that finishes a phase with more to come stores that state under a key
hashed from exactly what produced it (the run identity with only those phases' settings, and the seed); a run
with the same key adopts it and trains on from there, as it would have after training those phases itself
(tests/test_shared_phases.py compares the two bit for bit). Like a resumed run's, the state does not record
the thread count that produced it (``threads`` is not a result setting).

The states live beside the outputs (``<out_dir>/../cache/phases/<key>.pt``, one model each) and are a cache,
never a source of truth: a state is adopted only when its digest matches its content, its source run exists,
is not the adopting run itself, and is the same training of that run that stored it (identity.json's
``instance``: a run deleted and trained again, after a change in the code say, hands over anew and replaces
the state). A state that fails any of these is removed and its phases are trained again; one that cannot be
written (a read-only or full disk) is skipped with a note. ``python -m mtlib cache`` lists, verifies and
prunes them. Runs on N processes (torchrun) neither store nor adopt them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mtlib.config.run_config import RunConfig, resolve_path
from mtlib.rundir import CheckpointError, RunDirectory, check_fits, load_checkpoint, save_checkpoint
from mtlib.rundir.temporaries import remove_dead_temporaries
from mtlib.train.distributed import world_size
from mtlib.train.identity import run_identity
from mtlib.train.run_state import load_training_state


def phases_key(identity: dict, seed: int, done: int) -> str:
    """The key of the state after the run's first ``done`` phases (of more): the identity with only their
    settings (the later phases cannot have changed them), and the seed."""
    settings = {**identity["settings"], "phases": identity["settings"]["phases"][:done]}
    shared = {**identity, "settings": settings, "seed": seed, "phases_done": done}
    return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:16]


def first_phase_key(cfg: RunConfig) -> str | None:
    """The key of the state after ``cfg``'s first phase (None for a run of one phase)."""
    if len(cfg.phase_configs()) < 2:
        return None
    return phases_key(run_identity(cfg), cfg.seed, 1)


def outputs_root(cfg: RunConfig) -> Path:
    return resolve_path(cfg.out_dir).parent


def state_path(cfg: RunConfig, key: str) -> Path:
    return outputs_root(cfg) / "cache" / "phases" / f"{key}.pt"


def store(path: Path, key: str, state: dict) -> str:
    """Write a hand-over state (atomically: two runs finishing the same phases at once both write whole files,
    and either is the same state); an entry already there is replaced (it was not adoptable, or it would have
    been adopted). Returns "" or, when the cache cannot be written, why not: the run goes on without it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_temporaries(path.parent)
        save_checkpoint(path, {"key": key, **state})
    except OSError as err:
        return f"shared phase state not stored ({err}); the run goes on without it"
    return ""


def load(path: Path, key: str, root: Path, adopter: Path | None = None) -> tuple[dict | None, str]:
    """(the state, "") when there is a usable one; (None, why not) for a damaged or foreign file, or one whose
    source is gone, is ``adopter`` itself or was trained again since; (None, "") when there is none."""
    if not path.is_file():
        return None, ""
    try:
        state = load_checkpoint(path, legacy=False)
    except CheckpointError as err:
        return None, str(err)
    if state.get("key") != key:
        return None, f"{path} holds the state of other phases (key {state.get('key')!r}, not {key!r})"
    return state, stale(state, root, adopter)


def stale(state: dict, root: Path, adopter: Path | None = None) -> str:
    """Why a state may not be adopted (by ``adopter``) although its file is whole; "" when it may."""
    source = root / state["source"]
    if adopter is not None and source.resolve() == adopter.resolve():
        return f"it came from this run itself ({source}), deleted since; training those phases again"
    if not source.is_dir():
        return f"it came from {source}, which is gone; training those phases again"
    if RunDirectory(source).instance() != state.get("instance"):
        return f"{source} was trained again since it stored this state; training those phases again"
    return ""


def discard(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only cache: the state is not adopted either way


# ------------------------------------------------------------------ the trainer's side (mtlib.train.trainer)
def _where(trainer, done: int) -> tuple[str, Path] | None:
    if world_size() > 1:  # every rank's RNG would have to travel: N-process runs train their own
        return None
    key = phases_key(trainer.identity, trainer.cfg.seed, done)
    return key, state_path(trainer.cfg, key)


def share(trainer, done: int) -> None:
    """At a hand-over: store the state after the first ``done`` phases for runs that start with the same ones."""
    where = _where(trainer, done)
    if where is None:
        return
    state = trainer.state
    rows = [json.loads(line) for line in trainer.dir.history.read_text(encoding="utf-8").splitlines()]
    problem = store(
        where[1],
        where[0],
        {
            **state.training_state(trainer.model, trainer.streams, trainer.device),
            "history": rows[1 : state.history_lines],  # not the run's start row
            "source": _relative(trainer.run_dir, outputs_root(trainer.cfg)),
            "instance": trainer.instance,
            "phases": trainer.cfg.phase_names()[:done],
        },
    )
    if problem:
        print(f"[{trainer.cfg.name}] note: {problem}")


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def adopt(trainer, n_phases: int) -> int:
    """At a fresh start: the first phase to train, after the most leading phases another run has handed over
    from (their state loaded into the trainer, their history rows appended); 0 when there is none."""
    for done in range(n_phases - 1, 0, -1):
        where = _where(trainer, done)
        if where is None:
            return 0
        handover, problem = load(where[1], where[0], outputs_root(trainer.cfg), adopter=trainer.run_dir)
        if problem:
            print(f"[{trainer.cfg.name}] not using a shared phase state: {problem}")
            discard(where[1])
            handover = None
        if handover is None:
            continue
        check_fits(handover["model"], trainer.model.state_dict(), where[1], "this run's model")
        load_training_state(handover, trainer.model, trainer.streams, trainer.device, where[1])
        trainer.state.adopt(handover)
        for row in handover["history"]:  # as the source wrote them (its wall times: the run's time includes theirs)
            trainer.append(row)
        if trainer.cfg.progress:
            print(
                f"[{trainer.cfg.name}] {', '.join(handover['phases'])}: trained once by {handover['source']} with the "
                f"same settings and seed; going on from its hand-over"
            )
        return done
    return 0
