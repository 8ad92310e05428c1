"""The one resolver: (a profile or YAML file, an optional experiments row, a seed, overrides) -> RunConfig.

Every caller goes through ``resolve_config``: the CLI, the notebooks, the widgets, the results table and the
benchmarks. Order: the file (after its ``extends`` chain), then the row's config delta (and its id as the
run's name), then the caller's overrides, then the profile's ``phase_overrides`` on phases of that name,
then the seed; a row with ``init_from`` starts from that row's finished best.pt under the same profile, seed
and overrides (or, with ``inline_parent``, runs the parent's phases first inside the one run).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtlib.config import PARAMS_DIR, PHASE_KEYS, RunConfig, check_keys
from mtlib.configtypes import ConfigError, plain
from mtlib.study.experiments import get_row
from mtlib.study.yamlfile import read_yaml

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
    ``phase_overrides`` kept); every key and the seeds list checked, naming the file."""
    path = profile_path(profile, _chain[-1].parent if _chain else None)
    if path.resolve() in _chain:
        raise ConfigError(f"{path}: 'extends' forms a cycle ({' -> '.join(str(p) for p in (*_chain, path))})")
    data = dict(read_yaml(path))
    if "extends" in data:  # a file may start from a profile and change a few keys
        parent = load_profile(data.pop("extends"), (*_chain, path.resolve()))
        parent.pop("description", None)
        parent.pop("_source", None)
        overrides = {**(parent.pop("phase_overrides", None) or {})}
        for name, ph in (data.pop("phase_overrides", None) or {}).items():
            overrides[name] = {**overrides.get(name, {}), **(ph or {})}
        data = {**parent, **data, **({"phase_overrides": overrides} if overrides else {})}
    seeds = data.get("seeds", [data.get("seed", RunConfig.seed)])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{path}: key 'seeds' must be a non-empty list of integers, got {seeds!r}")
    check_keys({k: v for k, v in data.items() if k not in FILE_ONLY_KEYS}, str(path))
    for name, ph in (data.get("phase_overrides") or {}).items():
        if not isinstance(ph, Mapping) or any(k not in PHASE_KEYS for k in ph):
            raise ConfigError(f"{path}: phase_overrides[{name!r}] must map phase keys ({', '.join(sorted(PHASE_KEYS))})")
    data["_source"] = str(path)
    return data


def profile_seeds(profile: str | Path) -> list[int]:
    data = load_profile(profile)
    return list(data.get("seeds", [data.get("seed", RunConfig.seed)]))


def resolve_config(source: str | Path | Mapping[str, Any], row: str | Mapping | None = None, seed: int | None = None,
                   *, inline_parent: bool = False, **overrides: Any) -> RunConfig:
    """The RunConfig of a profile name, a YAML file (profile or run config) or a dict, plus a row and overrides."""
    if isinstance(source, Mapping):
        base, where = dict(plain(source)), "config"
    else:
        base = load_profile(source)
        where = base.pop("_source")
    phase_overrides = base.pop("phase_overrides", None) or {}
    seeds = base.pop("seeds", None)
    for key in ("description", "extends"):
        base.pop(key, None)
    parent = None
    if row is not None:
        row = get_row(row) if isinstance(row, str) else row
        base.update(plain(row["config"]))
        base["name"] = row["id"]
        where = f"{where} + row {row['id']!r}"
        parent = row.get("init_from")
    check_keys(overrides, "overrides")
    base.update(plain(overrides))
    if seed is not None:
        base["seed"] = seed
    elif "seed" not in base and seeds:
        base["seed"] = seeds[0]
    if parent and "init_checkpoint" not in overrides:
        if inline_parent:  # one run: the parent's phases, then the row's
            base["phases"] = [*plain(get_row(parent)["config"].get("phases", [])), *base.get("phases", [])]
            base["init_checkpoint"] = None
        else:  # start from the parent row's finished run: same profile, seed and overrides
            from mtlib.train.identity import run_dir_for

            parent_cfg = resolve_config(source, row=parent, seed=base.get("seed"),
                                        **{k: v for k, v in overrides.items() if k != "name"})
            base["init_checkpoint"] = str(run_dir_for(parent_cfg) / "best.pt")
    if base.get("phases"):
        base["phases"] = [{**ph, **phase_overrides.get(ph.get("name", ""), {})} for ph in base["phases"]]
    return RunConfig.from_dict(base, source=where)
