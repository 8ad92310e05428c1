"""Type checks for config values read from YAML, the command line or widgets, and the error they raise.

Small and generic: a value is checked against a dataclass field's annotation (Literal, unions, int, float,
str, bool, tuples, mappings) and frozen (tuples, read-only mappings) so a RunConfig cannot change after it
was checked and hashed.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

UNION_TYPES = (typing.Union, types.UnionType)  # Optional[X] and X | None


class Problem(str):
    """One error line that also knows the key it is about (``lr``, ``phases[1].lr``, or None), so a caller that
    knows where each key came from (a file and line, an override) can say so."""

    key: str | None

    def __new__(cls, text: str, key: str | None = None) -> "Problem":
        line = super().__new__(cls, text)
        line.key = key
        return line


def located(line: str, where: str) -> Problem:
    """``line`` with its leading ``config:`` replaced by ``where:`` (keeping the key it is about)."""
    text = f"{where}:{line[len('config:') :]}" if line.startswith("config:") else line
    return Problem(text, getattr(line, "key", None))


def locate(key: str | None, source: str, locations: Mapping[str, str] | None) -> str:
    """Where ``key`` (``lr``, ``phases[1].lr``) was set: its entry in ``locations``, or that of the nearest
    enclosing key (``phases[1]``, ``phases``), else ``source``."""
    while key and locations:
        if isinstance(locations.get(key), str):
            return locations[key]
        key = re.sub(r"(\.[^.\[\]]*|\[\d+\])$", "", key) if re.search(r"[.\[]", key) else None
    return source


class ConfigError(ValueError):
    """One or more bad keys or values; ``errors`` holds one line per problem."""

    def __init__(self, errors: list[str] | str):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("\n".join(self.errors))


def field_types_of(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in UNION_TYPES:
        return " or ".join(describe(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if origin in (tuple, list):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return f"a list of {describe(args[0])}" if args and args[0] is not Any else "a list"
    if origin in (Mapping, dict, typing.Mapping):
        args = get_args(tp)
        return f"a mapping of {describe(args[1])}" if args and args[1] is not Any else "a mapping"
    if tp is Any:
        return "anything"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def check_value(tp: Any, key: str, value: Any) -> tuple[bool, Any, str]:
    """(ok, coerced value, error line); ints are accepted where floats are expected."""
    ok, coerced = _match(tp, value)
    if ok:
        return True, coerced, ""
    note = " (NaN and infinity are not allowed)" if _non_finite(value) else ""
    shown = f"{plain(value)!r} ({type(value).__name__})"
    return False, value, f"key {key!r} has value {shown}; expected {describe(tp)}{note}"


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):  # 'nan', 'inf' from the command line or a quoted YAML value
        try:
            return not math.isfinite(float(value))
        except (ValueError, OverflowError):
            return False
    if isinstance(value, Mapping):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    return False


def _finite(number: Any) -> tuple[bool, Any]:
    try:
        number = float(number)
    except (ValueError, OverflowError):  # a word, or an integer too large for a float
        return False, number
    return math.isfinite(number), number  # NaN and infinity are never a valid setting


def _match(tp: Any, value: Any) -> tuple[bool, Any]:
    origin = get_origin(tp)
    if tp is Any:
        return True, value
    if origin is Literal:
        return value in get_args(tp) and not isinstance(value, bool), value
    if origin in UNION_TYPES:
        for arg in get_args(tp):
            ok, v = _match(arg, value)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            ok, number = _finite(value)
            return ok, number if ok else value
        if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
            ok, number = _finite(value)
            return ok, number if ok else value
        return False, value
    if tp is str:
        return isinstance(value, str), value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False, value
        args = [a for a in get_args(tp) if a is not Ellipsis] or [Any]
        out = []
        for v in value:
            ok, c = _match(args[0], v)
            if not ok:
                return False, value
            out.append(c)
        return True, tuple(out)
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            return False, value
        karg, varg = get_args(tp) or (Any, Any)
        out = {}
        for k, v in value.items():
            ok, c = _match(varg, v)
            if not ok or not _match(karg, k)[0]:
                return False, value
            out[k] = c
        return True, out
    return isinstance(value, tp), value


def frozen(value: Any) -> Any:
    """Lists as tuples and dicts as read-only mappings, all the way down."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    return value


def plain(value: Any) -> Any:
    """The inverse of ``frozen``: dicts and lists, for YAML and JSON."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
