"""One description per setting: a RunConfig field carries its own help, range, use and run-id relevance.

A field is declared as ``lr: float = setting(1e-5, "help", POSITIVE, phase=True)``: its type is the annotation,
its default the first argument, and the ``Setting`` record in the field's metadata says the rest. From it
come the range checks (``mtlib.config.checks``), the run id (``RunConfig.settings``), the keys a phase may
change, the CLI's ``--set`` help, and the panel's labels, tooltips, bounds and greyed-out controls.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mtlib.config.types import plain

METADATA_KEY = "mtlib.setting"


@dataclass(frozen=True)
class Range:
    """What a value must pass (null passes only where ``test`` allows it) and how an error says so; ``low`` and
    ``high`` bound the panel's sliders and number boxes."""

    test: Callable[[Any], Any]
    text: str
    low: float | None = None
    high: float | None = None

    def __call__(self, value: Any) -> bool:
        return bool(self.test(value))


@dataclass(frozen=True)
class Setting:
    help: str  # one line: what it does (the CLI's --set list, the panel's tooltip)
    range: Range | None = None  # None: any value of its type
    used_when: Callable[[Any], bool] | None = None  # on the config (a phase's, for phase keys); None: always
    result: bool = True  # False: it never changes results (names, paths, output, speed): not in the run id
    phase: bool = False  # a phase may override it (training settings, not the model's shape or the data)
    label: str | None = None  # what a person reads (panel, tables); None: the key with spaces
    identity: Callable[[Any], Any] | None = None  # what the run id holds instead of the plain value
    id_skips_default: bool = False  # left out of the run id at its default (runs from before it keep their id)

    def used(self, cfg: Any) -> bool:
        return self.used_when is None or bool(self.used_when(cfg))


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    range: Range | None = None,
    *,
    factory: Callable[[], Any] | None = None,
    **meta: Any,
) -> Any:
    """A dataclass field described by a ``Setting`` (``factory`` for a mutable default)."""
    if not help:
        raise TypeError("a setting needs its help text")
    kw = {"default_factory": factory} if factory is not None else {"default": default}
    return dataclasses.field(**kw, metadata={METADATA_KEY: Setting(help, range, **meta)})


@functools.cache
def settings_of(cls: type) -> dict[str, Setting]:
    """{field name: Setting} of a dataclass, in field order; cached and shared, so callers must not mutate it."""
    out = {}
    for f in dataclasses.fields(cls):
        if METADATA_KEY not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with setting(...)")
        out[f.name] = f.metadata[METADATA_KEY]
    return out


@functools.cache
def defaults_of(cls: type) -> dict[str, Any]:
    """{field name: default} of a dataclass, as plain data; cached and shared, so callers must not mutate it."""
    return {
        f.name: plain(f.default if f.default_factory is dataclasses.MISSING else f.default_factory())
        for f in dataclasses.fields(cls)
    }


def result_settings(cfg: Any, keys: Iterable[str]) -> dict[str, Any]:
    """The ``keys`` of ``cfg`` that change its results: each where it is used, as its ``identity`` says."""
    specs, defaults = settings_of(type(cfg)), defaults_of(type(cfg))
    out = {}
    for key in keys:
        spec, value = specs[key], plain(getattr(cfg, key))
        if not spec.result or not spec.used(cfg) or (spec.id_skips_default and value == defaults[key]):
            continue
        out[key] = spec.identity(cfg) if spec.identity else value
    return out


def settings_help(cls: type, width: int = 22) -> str:
    """One line per setting: its key and help (``python -m mtlib run --help``)."""
    return "\n".join(f"  {key:<{width}}{spec.help}" for key, spec in settings_of(cls).items())
