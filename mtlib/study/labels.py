"""Names a person reads for config keys, shared by the panel's controls and the notebooks' tables; the key
itself stays one hover (tooltip) or one column away."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KEY_LABELS = {
    "pair_mode": "pair encoding", "sampler": "task sampler", "n_hidden_layers": "hidden layers",
    "augment": "EDA augmentation", "pretrain": "individual pretraining", "gradient_method": "gradient method",
    "gradvac_beta": "GradVac β", "smart_weight": "SMART weight", "compromise": "Gradient Compromise",
    "compromise_k": "compromise K", "compromise_combine": "compromise combine", "head": "head",
    "head_size": "head size", "head_cls": "+ [CLS] embedding", "head_tasks": "recurrent head for",
    "pals": "PALs", "pal_mode": "PALs trained", "seed": "seed", "epochs": "epochs",
    "batches_per_epoch": "batches / epoch", "hidden_dropout": "hidden dropout", "lr": "learning rate",
    "freeze": "frozen", "train_pals": "PALs trained", "phases": "phases",
    "cagrad_c": "CAGrad c", "loss_weighting": "loss weighting", "loss_weighting_lr": "weighting lr",
    "dwa_temperature": "DWA temperature", "compromise_divide": "compromise ÷ nₜ^β",
}


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
