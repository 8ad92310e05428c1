"""Which parameters a phase trains."""

from __future__ import annotations

from torch import nn

FREEZE_MODES = ("none", "encoder", "all_but_pals")


def apply_freeze(model: nn.Module, freeze: str, train_pals: bool) -> None:
    """``encoder``: heads (and PALs, which are task-specific) train; ``all_but_pals``: only PALs train;
    ``train_pals=False`` keeps PALs frozen, so they stay exactly neutral in that phase."""
    if freeze not in FREEZE_MODES:
        raise ValueError(f"unknown freeze mode {freeze!r}; allowed: {', '.join(FREEZE_MODES)}")
    for p in model.parameters():
        p.requires_grad_(True)
    if freeze == "encoder":
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        for p in model.pal_parameters():
            p.requires_grad_(True)
    elif freeze == "all_but_pals":
        from mtlib.model.pals import freeze_all_but_pals

        freeze_all_but_pals(model)
    if not train_pals and freeze != "all_but_pals":
        for p in model.pal_parameters():
            p.requires_grad_(False)
