"""The phases the panel's toggles insert ("individual pretraining", "PALs only during finetuning"): taken from the
row itself, else from experiments.yaml, else from a fallback."""

from __future__ import annotations

from mtlib.experiments.rows import anchors, load_experiments

# Fallbacks when experiments.yaml holds no such phase (it normally does: the `pretrain` anchor, the
# `pal_only` phase of advanced_pal_finetune); profiles shorten both through `phase_overrides`.
DEFAULT_PHASES = {
    "pretrain": {
        "name": "pretrain",
        "freeze": "encoder",
        "lr": 1e-3,
        "sampler": "random",
        "gradient_method": "none",
        "compromise": False,
        "smart_weight": 0.0,
        "epochs": 1,
    },
    "pal_only": {"name": "pal_only", "freeze": "all_but_pals", "lr": 1e-4},
}


def phase_template(name: str, row_phases: list[dict]) -> dict:
    """The ``name`` phase ("pretrain" or "pal_only") as the row has it, else as experiments.yaml has it."""
    found = next((ph for ph in row_phases if ph.get("name") == name), None)
    if found is None:
        found = anchors().get(name)
    if found is None:
        found = next(
            (ph for r in load_experiments() for ph in r["config"].get("phases", []) if ph.get("name") == name), None
        )
    return dict(found or DEFAULT_PHASES[name])
