"""Checkpoints saved atomically and loaded without executing pickled code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts, with a ``format`` key: everything
``torch.load(..., weights_only=True)`` accepts, so opening a run directory from elsewhere (a shared
filesystem, a colleague's outputs/, an ``init_checkpoint``) cannot run code hidden in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mtlib.rundir.files import atomic_write

FORMAT = "mtlib-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, from elsewhere, or of another format."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    return atomic_write(path, writer=lambda f: torch.save({"format": FORMAT, **state}, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", remedy: str = "") -> dict[str, Any]:
    """The checkpoint's dict; ``CheckpointError`` naming the file, what is wrong and ``remedy`` (what to do)."""
    path = Path(path)
    what_to_do = f" {remedy}" if remedy else ""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.{what_to_do}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - a zip error, an unpickling refusal, a truncated file: all "damaged"
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is damaged or not an mtlib checkpoint ({reason}).{what_to_do}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not in mtlib's format {FORMAT!r}.{what_to_do}")
    return state


def model_state(path: str | Path, map_location: str | torch.device = "cpu", remedy: str = "") -> dict[str, Any]:
    """The model weights of a checkpoint (a best.pt, or a last.pt resume point)."""
    state = load_checkpoint(path, map_location, remedy)
    if not isinstance(state.get("model"), dict):
        raise CheckpointError(f"checkpoint {path} holds no model weights.{' ' + remedy if remedy else ''}")
    return state["model"]


def check_fits(state: dict[str, Any], expected: dict[str, Any], path: str | Path, what: str) -> None:
    """Refuse (``CheckpointError``, one line) model weights whose keys or shapes differ from ``expected`` (a
    model's ``state_dict()``); ``what`` names what they should fit, e.g. a run's config.yaml."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: {list(state[k].shape)} in the checkpoint, {list(expected[k].shape)} expected" for k in expected
              if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = [f"{len(found)} {kind} (e.g. {', '.join(found[:2])})" for kind, found in
                (("keys missing", missing), ("unexpected keys", unexpected), ("shapes differ", shapes)) if found]
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit {what}: {'; '.join(problems)}")
