"""``params/claims.yaml``: the paper's conclusions as hypotheses about experiments rows, read and checked.

Each claim states its kind (``mtlib.experiments.hypotheses``): ``directional`` (``a > b`` / ``a < b``),
``non_superiority`` (``a <= b``: a is not better than b by the margin δ) or ``equivalence`` (``a ~ b``: within
±δ). A margin claim takes its δ from its own ``margin`` or the file's top-level ``margin`` (dev scores only).
Every problem is one line naming the file, the line and the key (``claims[3].compare``) and what was expected.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from mtlib.config.run_config import PARAMS_DIR
from mtlib.config.types import ConfigError
from mtlib.experiments.rows import load_experiments
from mtlib.experiments.hypotheses import DIRECTIONAL, KINDS, NEEDS_MARGIN, OPERATORS, Hypothesis
from mtlib.config.yamlfile import read_yaml_lines
from mtlib import tasks as task_records

CLAIMS = PARAMS_DIR / "claims.yaml"
MEAN_METRICS = ("mean", "mean_sts01")  # with each declared task's name: dev scores, higher is better
SPEED_METRICS = ("examples_to_target",)  # from history.jsonl: lower is sooner
# from history.jsonl, on the dev-score scale, higher is better: the mean of the final phase's per-epoch dev
# means (the area under its dev curve per epoch): sooner learning at the same end scores higher
CURVE_METRICS = ("dev_auc",)


def is_score(metric: str) -> bool:
    """A score on the dev-score scale (a declared task's metric, a mean, or a dev curve's area): higher is
    better, continuous."""
    return metric in MEAN_METRICS or metric in CURVE_METRICS or metric in task_records.known()


def claim_metrics() -> tuple[str, ...]:
    return (*task_records.known(), *MEAN_METRICS, *CURVE_METRICS, *SPEED_METRICS)


REQUIRED = ("id", "claim", "kind", "compare", "metric")
OPTIONAL = ("margin", "fraction", "paper_says", "paper_compare")
TOP_LEVEL = ("claims", "margin")
_COMPARE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(<=|~|[<>])\s*([A-Za-z0-9_]+)\s*$")
_PAPER_COMPARE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*-\s*([A-Za-z0-9_]+)\s*$")


@dataclass(frozen=True)
class Claim:
    """``left <direction> right`` on ``metric``, a hypothesis about ``left - right`` (``hypothesis``)."""

    id: str
    claim: str
    left: str
    direction: str  # ">" or "<" (directional), "<=" (non_superiority), "~" (equivalence)
    right: str
    metric: str
    fraction: float = 0.95  # examples_to_target: the target is this fraction of the weaker run's best dev mean
    paper_says: str | None = None
    kind: str = DIRECTIONAL
    margin: float | None = None  # δ of a non_superiority / equivalence claim
    paper_left: str | None = None  # the rows the paper's own difference comes from, where it compared others
    paper_right: str | None = None

    @property
    def compare(self) -> str:
        return f"{self.left} {self.direction} {self.right}"

    @property
    def sign(self) -> int:
        return -1 if self.direction == "<" else 1

    @property
    def hypothesis(self) -> Hypothesis:
        return Hypothesis(self.kind, self.sign, math.nan if self.margin is None else float(self.margin))

    @property
    def paper_rows(self) -> tuple[str, str]:
        return (self.paper_left or self.left, self.paper_right or self.right)


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _positive(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


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
    extra = sorted(set(data) - set(TOP_LEVEL))
    if extra:
        raise ConfigError(f"{where(extra[0])}: unknown top-level key; allowed: {', '.join(TOP_LEVEL)}")
    default_margin = data.get("margin")
    if "margin" in data and not _positive(default_margin):
        raise ConfigError(
            f"{where('margin')}: expected a number > 0 (the default δ of margin claims on dev scores), "
            f"got {default_margin!r}"
        )
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
        kind = item["kind"]
        if kind not in KINDS:
            raise ConfigError(f"{where(f'{key}.kind')}: unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
        shapes = " or ".join(f"'<row> {op} <row>'" for op in OPERATORS[kind])
        match = _COMPARE.match(item["compare"])
        if not match or match.group(2) not in OPERATORS[kind]:
            raise ConfigError(f"{where(f'{key}.compare')}: {_a(kind)} claim expects {shapes}, got {item['compare']!r}")
        left, direction, right = match.groups()
        _check_rows(where(f"{key}.compare"), (left, right), row_ids)
        paper_rows = (None, None)
        if "paper_compare" in item:
            pm = _PAPER_COMPARE.match(str(item["paper_compare"]))
            if not pm:
                raise ConfigError(
                    f"{where(f'{key}.paper_compare')}: expected '<row> - <row>' (the rows the paper's own difference "
                    f"comes from), got {item['paper_compare']!r}"
                )
            paper_rows = pm.groups()
            _check_rows(where(f"{key}.paper_compare"), paper_rows, row_ids)
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
        margin = _margin(item, kind, default_margin, lambda k: where(f"{key}.{k}" if k else key))
        claims.append(
            Claim(
                item["id"],
                item["claim"].strip(),
                left,
                direction,
                right,
                item["metric"],
                float(fraction),
                says,
                kind,
                margin,
                *paper_rows,
            )
        )
    return claims


def _check_rows(where: str, rows: tuple[str, str], row_ids: set[str]) -> None:
    for row in rows:
        if row not in row_ids:
            raise ConfigError(
                f"{where}: {row!r} is no row of params/experiments.yaml; rows: {', '.join(sorted(row_ids))}"
            )
    if rows[0] == rows[1]:
        raise ConfigError(f"{where}: compares row {rows[0]!r} with itself")


def _margin(item: dict, kind: str, default, where) -> float | None:
    """The claim's δ: its own ``margin``, else the file's (dev scores only); None for a directional claim."""
    if kind not in NEEDS_MARGIN:
        if "margin" in item:
            raise ConfigError(f"{where('margin')}: only for kinds {', '.join(NEEDS_MARGIN)} (this claim is {kind})")
        return None
    if "margin" in item:
        if not _positive(item["margin"]):
            raise ConfigError(
                f"{where('margin')}: expected a number > 0 (δ of {_a(kind)} claim), got {item['margin']!r}"
            )
        return float(item["margin"])
    if not is_score(item["metric"]):
        raise ConfigError(
            f"{where('')}: {_a(kind)} claim on {item['metric']} needs its own 'margin' (in its unit; the top-level "
            "margin is on the dev-score scale)"
        )
    if default is None:
        raise ConfigError(f"{where('')}: {_a(kind)} claim needs a margin: give 'margin' here or a top-level 'margin'")
    return float(default)
