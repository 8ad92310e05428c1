"""Reading the project's YAML files with errors that name the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mtlib.configtypes import ConfigError

LINE_DEPTH = 5  # key paths recorded down to e.g. phases[0].lr, phase_overrides.pretrain.lr, rows[3].config.phases[0]


def read_yaml(path: str | Path, mapping: bool = True) -> Any:
    """The file's data; ``ConfigError`` for a missing file, a syntax error (with its line), a key given twice in
    one mapping (with both lines) or, when ``mapping``, a top level that is not a mapping of keys."""
    return read_yaml_lines(path, mapping)[0]


def read_yaml_lines(path: str | Path, mapping: bool = True) -> tuple[Any, dict[str, int]]:
    """``(data, lines)``: as ``read_yaml``, with the 1-based line of every key path down to ``LINE_DEPTH``
    levels (``lr``, ``phases``, ``phases[0]``, ``phases[0].lr``, ``phase_overrides.pretrain``, ...)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    if not path.is_file():
        raise ConfigError(f"{path}: not a file (a YAML config or profile was expected)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raw = path.read_bytes()
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(f"{path} line {line}: not UTF-8 text (byte {err.start}: {err.reason}); "
                          "is it a YAML file?") from None
    try:
        loader = yaml.SafeLoader(text)  # as yaml.safe_load, keeping the node tree for the lines
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}{where}: YAML syntax error: {problem}") from None
    if data is None:
        data = {}
    if mapping and not isinstance(data, dict):
        raise ConfigError(f"{path} line {node.start_mark.line + 1 if node else 1}: expected a mapping of config "
                          f"keys at the top level, got a {type(data).__name__}")
    lines: dict[str, int] = {}
    if node is not None:
        _walk(path, node, "", 0, lines)
    return data, lines


def _walk(path: Path, node: yaml.Node, prefix: str, depth: int, lines: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue  # merge keys (<<: *anchor) and complex keys carry no line of their own
            key, line = key_node.value, key_node.start_mark.line + 1
            child = f"{prefix}.{key}" if prefix else key
            if key in seen:
                raise ConfigError(f"{path} line {line}: key {child!r} appears twice (first on line {seen[key]}); "
                                  "give it once")
            seen[key] = line
            if depth < LINE_DEPTH:
                lines.setdefault(child, line)
            _walk(path, value_node, child, depth + 1, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{prefix}[{i}]"
            if depth < LINE_DEPTH and prefix:
                lines.setdefault(child, item.start_mark.line + 1)
            _walk(path, item, child, depth + 1, lines)
