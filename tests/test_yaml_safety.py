"""YAML alias bombs (issue 19): nested aliases are refused in linear time, with the file and line, by
``read_yaml`` and the CLI; ordinary anchors, aliases and merge keys (params/experiments.yaml uses them) still
read. Each bomb is read in a child process under a timeout, so that a regression fails instead of hanging."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mtlib.config.types import ConfigError
from mtlib.config.yamlfile import MAX_VALUES, read_yaml, read_yaml_lines

ROOT = Path(__file__).resolve().parent.parent


def alias_bomb(levels: int) -> str:
    """The "billion laughs": 9 strings, then 9 aliases of the level before, ``levels`` levels (9**levels)."""
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int) -> str:
    """The same with merge keys: each mapping merges the one before nine times."""
    lines = ["m0: &m0 {" + ", ".join(f"k{i}: x" for i in range(9)) + "}"]
    lines += [f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 9) + "]}" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def read_in_child(path: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    code = (
        "import sys\nfrom mtlib.config.types import ConfigError\nfrom mtlib.config.yamlfile import read_yaml\n"
        "try:\n    read_yaml(sys.argv[1])\nexcept ConfigError as err:\n    print(err)\n    sys.exit(2)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.mark.parametrize("make, line", [(alias_bomb, 6), (merge_bomb, 5)])
def test_bomb_refused_quickly_with_file_and_line(tmp_path, make, line):
    path = tmp_path / "bomb.yaml"
    path.write_text(make(10))
    assert len(path.read_bytes()) < 700
    proc = read_in_child(path)  # before the fix: ~2 h for 10 levels
    assert proc.returncode == 2, proc.stderr
    out = proc.stdout.strip()
    assert len(out.splitlines()) == 1
    # the innermost value past the limit (level 5 holds 9**6 strings; merges count keys too)
    assert out.startswith(f"{path} line {line}: ") and f"more than {MAX_VALUES:,} values" in out
    assert "write the data out or use fewer levels of aliases" in out


def test_bomb_through_the_cli_is_one_error_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(10))
    proc = subprocess.run(
        [sys.executable, "-m", "mtlib", "run", str(path)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path} line 6: "), proc.stderr


def test_small_bomb_below_the_limit_reads_correctly(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(alias_bomb(4))  # 9**4 = 6,561 strings: allowed, shared, read as yaml.safe_load does
    data = read_yaml(path)
    assert data["a3"][8][8][8] == ["lol"] * 9
    assert data["a3"][0] is data["a3"][1]


def test_self_containing_value_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("x: 1\nloop: &loop [1, *loop]\n")
    with pytest.raises(
        ConfigError,
        match=r"loop.yaml line 2: an alias \(\*name\) here refers to a value that "
        r"contains it",
    ):
        read_yaml(path)


def test_anchors_aliases_and_merge_keys_still_read(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("base: &base {lr: 1, name: pretrain}\nphases: [*base, *base]\nmerged:\n  <<: *base\n  lr: 2\n")
    data, lines = read_yaml_lines(path)
    # a key after a merge wins over the merged one, and is not "given twice"
    assert data == {
        "base": {"lr": 1, "name": "pretrain"},
        "phases": [{"lr": 1, "name": "pretrain"}] * 2,
        "merged": {"lr": 2, "name": "pretrain"},
    }
    assert lines["merged.lr"] == 5 and lines["phases[1]"] == 1 and lines["phases[1].lr"] == 1  # an alias: its anchor
    path.write_text("merged:\n  <<: {lr: 1}\n  lr: 2\n  lr: 3\n")
    with pytest.raises(ConfigError, match=r"line 4: key 'merged.lr' appears twice \(first on line 3\)"):
        read_yaml(path)


def test_project_files_read():
    # params/experiments.yaml shares its phases through anchors and aliases
    assert read_yaml(ROOT / "params" / "experiments.yaml")
    for path in sorted((ROOT / "params" / "profiles").glob("*.yaml")):
        read_yaml(path)
