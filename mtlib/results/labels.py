"""Names a person reads for config keys, shared by the panel's controls and the notebooks' tables; the key
itself stays one hover (tooltip) or one column away."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtlib.config.run_config import SETTINGS

# the panel's phase toggles: not config keys, they add or remove phases (mtlib.notebook.widgets.controls)
TOGGLE_LABELS = {"pretrain": "individual pretraining", "pal_mode": "PALs trained"}
# every config key's label is its setting's (mtlib.config.run_config), else the key with spaces
KEY_LABELS = {**{key: spec.label or key.replace("_", " ") for key, spec in SETTINGS.items()}, **TOGGLE_LABELS}


def key_label(key: str) -> str:
    return KEY_LABELS.get(key, key.replace("_", " "))


def config_text(delta: Mapping[str, Any]) -> str:
    """A row's config delta in words: ``hidden layers 1, task sampler pal, EDA augmentation on, phases: pretrain → finetune``."""
    parts = []
    for key, value in delta.items():
        if key == "phases":
            names = [ph.get("name", "?") if isinstance(ph, Mapping) else "?" for ph in value or []]
            parts.append("phases: " + " → ".join(names))
        elif isinstance(value, bool):
            parts.append(f"{key_label(key)} {'on' if value else 'off'}")
        else:
            parts.append(f"{key_label(key)} {value}")
    return ", ".join(parts) or "(the profile as is)"
