"""Checkpoints saved atomically with a digest, and loaded only when their content is what was saved.

A checkpoint file is one header line, ``mtlib-checkpoint-2 sha256=<hex of the rest>``, then what
``torch.save`` writes. ``torch.load`` does not check the zip's CRCs, so a flipped byte inside a tensor
would load as a slightly different model; the digest refuses it. The payload is a dict of tensors, numbers,
strings, lists and dicts: everything ``torch.load(..., weights_only=True)`` accepts, so opening a run
directory from elsewhere (a shared filesystem, a colleague's outputs/, an ``init_checkpoint``) cannot run
code hidden in it. Files of the first format (no header, no digest: written before this release) still load,
with a note that they could not be verified.
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path
from typing import Any

import torch

from mtlib.rundir.atomic import atomic_write

FORMAT = "mtlib-checkpoint-1"  # the payload's "format" key (unchanged: the digest lives in the file's header)
MAGIC = b"mtlib-checkpoint-2 sha256="
_HEADER_LEN = len(MAGIC) + 64 + 1  # the magic, 64 hex digits, "\n"
_CHUNK = 1 << 22


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, from elsewhere, or of another format."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    payload = buffer.getbuffer()
    digest = hashlib.sha256(payload).hexdigest()

    def write(f) -> None:
        f.write(MAGIC + digest.encode() + b"\n")
        f.write(payload)

    try:
        return atomic_write(path, writer=write)
    finally:
        payload.release()  # the buffer's export, before the buffer is freed


def file_digest(path: str | Path) -> str:
    """The sha256 a checkpoint's header records (its payload's), else the whole file's; cheap for checkpoints."""
    with open(path, "rb") as f:
        header = f.read(_HEADER_LEN)
        if header.startswith(MAGIC) and len(header) == _HEADER_LEN:
            return header[len(MAGIC) : -1].decode("ascii", "replace")
        h = hashlib.sha256(header)
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _payload(path: Path, what_to_do: str, legacy: bool) -> io.BytesIO | Path:
    """The verified payload of a digest-carrying file; the path itself for a first-format file."""
    with open(path, "rb") as f:
        header = f.read(_HEADER_LEN)
        if not header.startswith(MAGIC):
            if not legacy:
                raise CheckpointError(
                    f"checkpoint {path} carries no digest (written by an earlier mtlib); it cannot "
                    f"be verified.{what_to_do}"
                )
            print(
                f"note: checkpoint {path} was written before checkpoints carried a digest; loaded unverified",
                file=sys.stderr,
            )
            return path
        body = f.read()
    recorded = header[len(MAGIC) : -1].decode("ascii", "replace")
    actual = hashlib.sha256(body).hexdigest()
    if len(header) != _HEADER_LEN or actual != recorded:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its content does not match the digest it was saved "
            f"with (sha256 {actual[:12]}..., recorded {recorded[:12]}...).{what_to_do}"
        )
    return io.BytesIO(body)


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", remedy: str = "", legacy: bool = True
) -> dict[str, Any]:
    """The checkpoint's dict; ``CheckpointError`` naming the file, what is wrong and ``remedy`` (what to do).
    ``legacy=False`` refuses first-format files (no digest) too: caches rebuild rather than trust them."""
    path = Path(path)
    what_to_do = f" {remedy}" if remedy else ""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.{what_to_do}")
    source = _payload(path, what_to_do, legacy)
    try:
        state = torch.load(source, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - a zip error, an unpickling refusal, a truncated file: all "damaged"
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} is damaged or not an mtlib checkpoint ({reason}).{what_to_do}"
        ) from None
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
    shapes = [
        f"{k}: {list(state[k].shape)} in the checkpoint, {list(expected[k].shape)} expected"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = [
        f"{len(found)} {kind} (e.g. {', '.join(found[:2])})"
        for kind, found in (("keys missing", missing), ("unexpected keys", unexpected), ("shapes differ", shapes))
        if found
    ]
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit {what}: {'; '.join(problems)}")
