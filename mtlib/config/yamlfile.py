"""Reading the project's YAML files with errors that name the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mtlib.config.types import ConfigError

LINE_DEPTH = 5  # key paths recorded down to e.g. phases[0].lr, phase_overrides.pretrain.lr, rows[3].config.phases[0]
# Anchors, aliases and merge keys are read, not refused: params/experiments.yaml shares its phases that way
# (pretrain: &pretrain {...}, phases: [*pretrain, *finetune]). An alias is the anchored node itself, so nested
# aliases ("billion laughs": 600 bytes, 9**10 values once expanded) make a small node graph but a huge tree for
# whatever walks the data later (the resolver, deep copies, json dumps). So the tree the data would expand to is
# measured in time linear in the graph (each node's size computed once) and refused past MAX_VALUES, naming
# the line of the innermost value that expands too far; a value that contains itself is refused too; and the
# line walk enters each node once (again only where it still records lines, above LINE_DEPTH). A merge key
# (<<: *base) counts all of what it merges (an upper bound: later keys win over merged ones).
MAX_VALUES = 100_000  # values (mappings, lists, scalars, keys) of the expanded tree; params/experiments.yaml has ~1,300


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
        raise ConfigError(
            f"{path} line {line}: not UTF-8 text (byte {err.start}: {err.reason}); is it a YAML file?"
        ) from None
    lines: dict[str, int] = {}
    try:
        loader = yaml.SafeLoader(text)  # as yaml.safe_load, keeping the node tree for the lines
        try:
            node = loader.get_single_node()
            if node is not None:  # before construct_document, which replaces merge keys (<<) by what they merge
                _check_size(path, node)
                _walk(path, node, "", 0, lines, set())
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
        raise ConfigError(
            f"{path} line {node.start_mark.line + 1 if node else 1}: expected a mapping of config "
            f"keys at the top level, got a {type(data).__name__}"
        )
    return data, lines


def _check_size(path: Path, root: yaml.Node) -> None:
    """``ConfigError`` where the data, its aliases expanded, would exceed ``MAX_VALUES`` values or contain
    itself. Each node is sized once (an alias is the anchored node again), without recursion."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            children = _children(node)
            size = 1 + sum(sizes[id(c)] for c in children)
            open_nodes.discard(key)
            if size > MAX_VALUES:
                raise ConfigError(
                    f"{path} line {node.start_mark.line + 1}: this value, its aliases (*name) "
                    f"expanded, holds more than {MAX_VALUES:,} values (nested aliases repeat "
                    "their anchors' data); write the data out or use fewer levels of aliases"
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise ConfigError(
                f"{path} line {node.start_mark.line + 1}: an alias (*name) here refers to a value "
                "that contains it, so the data would contain itself; put a copy of the data there"
            )
        open_nodes.add(key)
        stack.append((node, True))
        for child in _children(node):
            child_key = id(child)
            if child_key in open_nodes:
                raise ConfigError(
                    f"{path} line {node.start_mark.line + 1}: an alias (*name) here refers to a "
                    "value that contains it, so the data would contain itself; put a copy of the "
                    "data there"
                )
            if child_key not in sizes:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _walk(path: Path, node: yaml.Node, prefix: str, depth: int, lines: dict[str, int], walked: set[int]) -> None:
    # A node seen before (through an alias) was checked for repeated keys then; it is entered again only to
    # record the lines of its key paths under this prefix, which stops at LINE_DEPTH.
    if id(node) in walked and depth >= LINE_DEPTH:
        return
    walked.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue  # merge keys (<<: *anchor) and complex keys carry no line of their own
            key, line = key_node.value, key_node.start_mark.line + 1
            child = f"{prefix}.{key}" if prefix else key
            if key in seen:
                raise ConfigError(
                    f"{path} line {line}: key {child!r} appears twice (first on line {seen[key]}); give it once"
                )
            seen[key] = line
            if depth < LINE_DEPTH:
                lines.setdefault(child, line)
            _walk(path, value_node, child, depth + 1, lines, walked)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{prefix}[{i}]"
            if depth < LINE_DEPTH and prefix:
                lines.setdefault(child, item.start_mark.line + 1)
            _walk(path, item, child, depth + 1, lines, walked)
