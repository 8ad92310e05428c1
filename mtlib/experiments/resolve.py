"""The one resolver: (a profile or YAML file, an optional experiments row, a seed, overrides) -> RunConfig.

Every caller goes through ``resolve_config``: the CLI, the notebooks, the widgets, the results table and the
benchmarks. Order: the file (after its ``extends`` chain), then the row's config delta (and its id as the
run's name), then the caller's overrides, then the profile's ``phase_overrides`` on phases of that name,
then the seed; a row with ``init_from`` starts from that row's finished best.pt under the same profile, seed
and overrides (or, with ``inline_parent``, runs the parent's phases first inside the one run).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtlib.config.run_config import PARAMS_DIR, PHASE_KEYS, RunConfig, check_keys
from mtlib.config.types import ConfigError, Problem, plain
from mtlib.experiments.rows import EXPERIMENTS, get_row
from mtlib.config.yamlfile import read_yaml_lines

FILE_ONLY_KEYS = ("seeds", "description", "phase_overrides", "extends")  # keys of a file that are not RunConfig keys
PROFILES_DIR = PARAMS_DIR / "profiles"


def profile_path(profile: str | Path, relative_to: Path | None = None) -> Path:
    """A profile name (``quick``) or a YAML path; names are looked up in params/profiles/."""
    path = Path(profile)
    if path.suffix:
        if not path.is_absolute() and relative_to is not None and (relative_to / path).is_file():
            return relative_to / path
        return path
    found = PROFILES_DIR / f"{profile}.yaml"
    if not found.is_file():
        avail = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise ConfigError(f"profile {str(profile)!r} not found at {found}; available: {', '.join(avail)}")
    return found


def load_profile(profile: str | Path, _chain: tuple = ()) -> dict[str, Any]:
    """A profile or run-config file as a dict, its ``extends`` chain applied (``seeds`` and
    ``phase_overrides`` kept); every key and the seeds list checked, naming the file and line. The dict also
    holds ``_source`` (the file) and ``_lines`` ({key path: "file line N"}, for error messages)."""
    path = profile_path(profile, _chain[-1].parent if _chain else None)
    if path.resolve() in _chain:
        raise ConfigError(f"{path}: 'extends' forms a cycle ({' -> '.join(str(p) for p in (*_chain, path))})")
    data, numbers = read_yaml_lines(path)
    data = dict(data)
    lines = {key: f"{path} line {n}" for key, n in numbers.items()}

    def at(key: str) -> str:
        return lines.get(key, str(path))

    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise ConfigError(f"{at('description')}: key 'description' has value {description!r}; expected a string")
    po = data.get("phase_overrides")
    if po is not None and not isinstance(po, Mapping):
        raise ConfigError(
            f"{at('phase_overrides')}: key 'phase_overrides' has value {po!r}; expected a mapping "
            "of phase name -> phase keys"
        )
    if "extends" in data:  # a file may start from a profile and change a few keys
        extends = data.pop("extends")
        if not isinstance(extends, str) or not extends.strip():
            raise ConfigError(
                f"{at('extends')}: key 'extends' has value {extends!r}; expected a profile name or a YAML file path"
            )
        chain = (*_chain, path.resolve())
        try:
            parent_path = profile_path(extends, path.parent).resolve()
        except ConfigError as err:
            raise ConfigError(f"{at('extends')}: key 'extends': {err.errors[0]}") from None
        if parent_path in chain:
            raise ConfigError(
                f"{at('extends')}: key 'extends' forms a cycle ({' -> '.join(str(p) for p in (*chain, parent_path))})"
            )
        if not parent_path.is_file():
            beside = "" if Path(extends).is_absolute() else f"{path.parent / extends} nor "
            raise ConfigError(
                f"{at('extends')}: key 'extends' names {extends!r}, but neither {beside}{parent_path} is a file"
            )
        parent = load_profile(extends, chain)
        parent.pop("description", None)
        parent.pop("_source", None)
        parent_lines = parent.pop("_lines", {})
        overrides = {**(parent.pop("phase_overrides", None) or {})}
        for name, ph in (data.pop("phase_overrides", None) or {}).items():  # a non-mapping is refused below
            overrides[name] = {**overrides.get(name, {}), **ph} if isinstance(ph, Mapping) else ph
        data = {**parent, **data, **({"phase_overrides": overrides} if overrides else {})}
        # a key this file sets comes from this file; the rest (and phase overrides it does not touch) from the parent
        own = {_top(k) for k in lines} - {"phase_overrides"}
        lines = {**{k: v for k, v in parent_lines.items() if _top(k) not in own}, **lines}
    seeds = data.get("seeds", [data.get("seed", RunConfig.seed)])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32 for s in seeds)
    ):
        where = at("seeds") if "seeds" in data else at("seed")
        raise ConfigError(
            Problem(
                f"{where}: key 'seeds' has value {seeds!r}; expected a non-empty list of integers in 0..2**32-1",
                "seeds",
            )
        )
    check_keys({k: v for k, v in data.items() if k not in FILE_ONLY_KEYS}, str(path), lines)
    for name, ph in (data.get("phase_overrides") or {}).items():
        where = lines.get(f"phase_overrides.{name}", at("phase_overrides"))
        if not isinstance(ph, Mapping):
            raise ConfigError(
                f"{where}: phase_overrides[{name!r}] has value {ph!r}; expected a mapping of phase "
                f"keys ({', '.join(sorted(PHASE_KEYS))})"
            )
        unknown = [k for k in ph if k not in PHASE_KEYS]
        if unknown:
            raise ConfigError(
                [
                    f"{lines.get(f'phase_overrides.{name}.{k}', where)}: phase_overrides[{name!r}] has "
                    f"key {k!r}, which a phase cannot change; allowed: {', '.join(sorted(PHASE_KEYS))}"
                    for k in unknown
                ]
            )
    data["_source"] = str(path)
    data["_lines"] = lines
    return data


def _top(key: str) -> str:
    """The top-level key of a key path: ``phases`` of ``phases[0].lr``."""
    return re.split(r"[.\[]", key, maxsplit=1)[0]


def profile_seeds(profile: str | Path) -> list[int]:
    data = load_profile(profile)
    return list(data.get("seeds", [data.get("seed", RunConfig.seed)]))


def resolve_config(
    source: str | Path | Mapping[str, Any],
    row: str | Mapping | None = None,
    seed: int | None = None,
    *,
    inline_parent: bool = False,
    **overrides: Any,
) -> RunConfig:
    """The RunConfig of a profile name, a YAML file (profile or run config) or a dict, plus a row and overrides.

    Every error line names where its key was set: ``<file> line N``, ``<experiments file> line N (row 'id')``,
    ``overrides`` (a caller's keyword, the CLI's ``--set``/``--seed``) or, for the defaults, the source."""
    if isinstance(source, Mapping):
        base, where, lines = dict(plain(source)), "config", {}
    else:
        base = load_profile(source)
        where, lines = base.pop("_source"), base.pop("_lines", {})
    phase_overrides = base.pop("phase_overrides", None) or {}
    seeds = base.pop("seeds", None)
    for key in ("description", "extends"):
        base.pop(key, None)
    if seeds and "seed" not in base:
        lines.setdefault("seed", lines.get("seeds[0]", lines.get("seeds", where)))
    parent = None
    if row is not None:
        row = get_row(row) if isinstance(row, str) else row
        if not isinstance(row, Mapping) or "id" not in row or not isinstance(row.get("config", {}), Mapping):
            raise ConfigError(f"row {plain(row)!r}: expected a mapping with an 'id' and a 'config' mapping")
        row_where = _row_locations(row)
        check_keys(row.get("config", {}), f"row {row.get('id')!r}", row_where)
        _set_from(lines, row.get("config", {}), row_where, f"row {row.get('id')!r}")
        base.update(plain(row.get("config", {})))
        base["name"] = row["id"]
        lines["name"] = row_where.get("name", f"row {row['id']!r}")
        where = f"{where} + row {row['id']!r}"
        parent = row.get("init_from")
    check_keys(overrides, "overrides")
    _set_from(lines, overrides, {}, "overrides")
    base.update(plain(overrides))
    if seed is not None:
        base["seed"] = seed
        lines["seed"] = "overrides"  # the seed parameter is an override like the others
    elif "seed" not in base and seeds:
        base["seed"] = seeds[0]
    if parent and "init_checkpoint" not in overrides:
        if inline_parent:  # one run: the parent's phases, then the row's
            parent_cfg = get_row(parent)["config"]
            parent_phases = plain(parent_cfg.get("phases", []))
            if not parent_cfg.get(
                "pals"
            ):  # the parent had no PALs: they stay at their neutral start until the row's phases
                parent_phases = [{**ph, "train_pals": False} for ph in parent_phases]
            own = base.get("phases", [])  # a phases value that is not a list is refused by the type check
            base["phases"] = [*parent_phases, *own] if isinstance(own, (list, tuple)) else own
            later = "overrides" if "phases" in overrides else repr(row["id"])
            _set_from(lines, {"phases": None}, {}, f"row {parent!r} + {later}")  # the parent's phases come first
            base["init_checkpoint"] = None
        else:  # start from the parent row's finished run: same profile, seed and overrides
            from mtlib.train.identity import run_dir_for

            parent_cfg = resolve_config(
                source, row=parent, seed=base.get("seed"), **{k: v for k, v in overrides.items() if k != "name"}
            )
            base["init_checkpoint"] = str(run_dir_for(parent_cfg) / "best.pt")
    if isinstance(base.get("phases"), (list, tuple)):
        phases = []
        for i, ph in enumerate(base["phases"]):
            name = ph.get("name") if isinstance(ph, Mapping) else None
            extra = phase_overrides.get(name, {}) if isinstance(name, str) else {}
            for k in extra:  # a bad value from phase_overrides is named where phase_overrides set it
                lines[f"phases[{i}].{k}"] = lines.get(
                    f"phase_overrides.{name}.{k}", lines.get(f"phase_overrides.{name}", where)
                )
            phases.append({**ph, **extra} if extra else ph)
        base["phases"] = phases
    return RunConfig.from_dict(base, source=where, locations=lines)


def _set_from(lines: dict[str, str], keys: Mapping[str, Any], known: Mapping[str, str], fallback: str) -> None:
    """Keys set by a later layer (a row, overrides): forget where the file set them, note where they now come from."""
    for key in keys:
        for old in [k for k in lines if _top(k) == key]:
            del lines[old]
        lines.update({k: v for k, v in known.items() if _top(k) == key})
        lines.setdefault(key, fallback)


def _row_locations(row: Mapping) -> dict[str, str]:
    """{config key path: "<experiments file> line N (row 'id')"} for a row of params/experiments.yaml."""
    try:
        found = _experiment_lines(str(EXPERIMENTS), EXPERIMENTS.stat().st_mtime_ns).get(row.get("id"))
    except (ConfigError, OSError):
        return {}
    return dict(found[1]) if found and found[0] == row.get("config") else {}  # a caller's own row: no lines


@functools.lru_cache(maxsize=4)
def _experiment_lines(path: str, mtime_ns: int) -> dict[str, tuple[Any, dict[str, str]]]:
    """{row id: (its config, {config key path: "<file> line N (row 'id')"})}, read once per version of the file."""
    data, numbers = read_yaml_lines(path)
    out = {}
    for index, row in enumerate(data.get("rows") or []):
        if not isinstance(row, Mapping) or "id" not in row:
            continue
        prefix, where = f"rows[{index}].config.", f" (row {row['id']!r})"
        lines = {key[len(prefix) :]: f"{path} line {n}{where}" for key, n in numbers.items() if key.startswith(prefix)}
        lines["name"] = f"{path} line {numbers.get(f'rows[{index}].id', numbers.get(f'rows[{index}]', 0))}{where}"
        out[row["id"]] = (row.get("config"), lines)
    return out
