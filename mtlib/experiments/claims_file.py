"""``params/claims.yaml``: the paper's conclusions as comparisons of experiments rows, read and checked.

Every problem is one line naming the file, the line and the key (``claims[3].compare``) and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mtlib.config.run_config import PARAMS_DIR
from mtlib.config.types import ConfigError
from mtlib.experiments.rows import load_experiments
from mtlib.config.yamlfile import read_yaml_lines
from mtlib import tasks as task_records

CLAIMS = PARAMS_DIR / "claims.yaml"
MEAN_METRICS = ("mean", "mean_sts01")  # with each declared task's name: dev scores, higher is better
SPEED_METRICS = ("examples_to_target",)  # from history.jsonl: lower is sooner


def is_score(metric: str) -> bool:
    """A dev score of metrics.json (a declared task's metric, or a mean): higher is better."""
    return metric in MEAN_METRICS or metric in task_records.known()


def claim_metrics() -> tuple[str, ...]:
    return (*task_records.known(), *MEAN_METRICS, *SPEED_METRICS)


REQUIRED = ("id", "claim", "compare", "metric")
OPTIONAL = ("fraction", "paper_says")
_COMPARE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*([<>])\s*([A-Za-z0-9_]+)\s*$")


@dataclass(frozen=True)
class Claim:
    """``left <direction> right`` on ``metric``: the claim is that ``left - right`` has the sign of ``direction``."""

    id: str
    claim: str
    left: str
    direction: str  # ">" or "<"
    right: str
    metric: str
    fraction: float = 0.95  # examples_to_target: the target is this fraction of the weaker run's best dev mean
    paper_says: str | None = None

    @property
    def compare(self) -> str:
        return f"{self.left} {self.direction} {self.right}"

    @property
    def sign(self) -> int:
        return 1 if self.direction == ">" else -1


def load_claims(path: str | Path | None = None, experiments: list[dict] | None = None) -> list[Claim]:
    """The claims of ``path`` (default ``params/claims.yaml``), checked against the experiments rows."""
    path = Path(path) if path else CLAIMS
    data, lines = read_yaml_lines(path)
    items = data.get("claims")

    def where(key: str) -> str:
        line = lines.get(key) or lines.get(key.rsplit(".", 1)[0]) or lines.get("claims")
        return f"{path}{f' line {line}' if line else ''}: {key}"

    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where('claims')}: expected a top-level key 'claims' holding a list of claims")
    row_ids = {r["id"] for r in (experiments if experiments is not None else load_experiments())}
    claims, seen = [], {}
    for i, item in enumerate(items):
        key = f"claims[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where(key)}: expected a mapping with keys {', '.join(REQUIRED)}")
        unknown = sorted(set(item) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise ConfigError(f"{where(f'{key}.{unknown[0]}')}: unknown key; allowed: {', '.join(REQUIRED + OPTIONAL)}")
        for name in REQUIRED:
            if name not in item:
                raise ConfigError(f"{where(key)}: lacks key {name!r}")
            if not isinstance(item[name], str) or not item[name].strip():
                raise ConfigError(f"{where(f'{key}.{name}')}: expected a non-empty string, got {item[name]!r}")
        if item["id"] in seen:
            raise ConfigError(f"{where(f'{key}.id')}: repeats id {item['id']!r} (first at claims[{seen[item['id']]}])")
        seen[item["id"]] = i
        match = _COMPARE.match(item["compare"])
        if not match:
            raise ConfigError(
                f"{where(f'{key}.compare')}: expected '<row> > <row>' or '<row> < <row>', got {item['compare']!r}"
            )
        left, direction, right = match.groups()
        for row in (left, right):
            if row not in row_ids:
                raise ConfigError(
                    f"{where(f'{key}.compare')}: {row!r} is no row of params/experiments.yaml; rows: "
                    f"{', '.join(sorted(row_ids))}"
                )
        if left == right:
            raise ConfigError(f"{where(f'{key}.compare')}: compares row {left!r} with itself")
        if item["metric"] not in claim_metrics():
            raise ConfigError(
                f"{where(f'{key}.metric')}: unknown metric {item['metric']!r}; allowed: {', '.join(claim_metrics())}"
            )
        fraction = item.get("fraction", 0.95)
        if "fraction" in item and item["metric"] not in SPEED_METRICS:
            raise ConfigError(f"{where(f'{key}.fraction')}: only for metric {', '.join(SPEED_METRICS)}")
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ConfigError(f"{where(f'{key}.fraction')}: expected a number in (0, 1], got {fraction!r}")
        says = item.get("paper_says")
        if says is not None and not isinstance(says, str):
            raise ConfigError(f"{where(f'{key}.paper_says')}: expected a string, got {says!r}")
        claims.append(
            Claim(item["id"], item["claim"].strip(), left, direction, right, item["metric"], float(fraction), says)
        )
    return claims
