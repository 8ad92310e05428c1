"""Reading the project's YAML files with errors that name the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mtlib.configtypes import ConfigError


def read_yaml(path: str | Path, mapping: bool = True) -> Any:
    """The file's data; ``ConfigError`` for a missing file, a syntax error (with its line) or, when ``mapping``,
    a top level that is not a mapping of keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}{where}: YAML syntax error: {problem}") from None
    if data is None:
        data = {}
    if mapping and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got a {type(data).__name__}")
    return data
