"""The panel's toggles: which ones each notebook shows and their widgets. What a toggle means (its label,
tooltip, bounds, and when it applies) is its setting's description (``mtlib.config.run_config.SETTINGS``)."""

from __future__ import annotations

import math
from typing import Any, get_args

import ipywidgets as W

from mtlib.config.run_config import SETTINGS, Setting, field_types
from mtlib.results.labels import KEY_LABELS, key_label

PAL_FROM_START = "from start"
PAL_FINETUNE_ONLY = "only during finetuning"
RUN_CONTROLS = ["seed", "epochs", "batches_per_epoch", "lr"]
PRESETS = {  # notebook -> the toggles it shows (a row's notebook picks the default)
    "02_baselines": ["pair_mode", "sampler", "n_hidden_layers", "augment", "pretrain"],
    "03_gradient_methods": [
        "n_hidden_layers",
        "sampler",
        "pretrain",
        "gradient_method",
        "gradvac_beta",
        "smart_weight",
    ],
    "04_heads": ["n_hidden_layers", "sampler", "head", "head_size", "head_cls", "head_tasks"],
    "05_pals": ["n_hidden_layers", "sampler", "augment", "pretrain", "pals", "pal_mode"],
    "06_gradient_compromise": [
        "sampler",
        "pretrain",
        "gradient_method",
        "gradvac_beta",
        "compromise",
        "compromise_k",
        "compromise_combine",
    ],
    "08_more_methods": [
        "pretrain",
        "gradient_method",
        "cagrad_c",
        "gradvac_beta",
        "loss_weighting",
        "loss_weighting_lr",
        "dwa_temperature",
        "compromise",
        "compromise_divide",
    ],
}
PRESETS = {k: v + RUN_CONTROLS for k, v in PRESETS.items()}
BASELINE_CONTROLS = PRESETS["02_baselines"]
LABELS = KEY_LABELS  # what a person reads; the config key is the tooltip
# Every control has the same width and label width, in a wrapping row: nothing overlaps at any width.
CONTROL_WIDTH, LABEL_WIDTH = "25em", "12.5em"
# panel-only toggles that are not RunConfig keys (they add or remove phases), described as a setting is
PHASE_TOGGLES = {
    "pretrain": Setting("adds a 'pretrain' phase (encoder frozen) before finetuning"),
    "pal_mode": Setting("'only during finetuning' adds a 'pal_only' phase", used_when=lambda c: c.pals),
}
SLIDER_ENDS = {"n_hidden_layers": 3, "epochs": 20, "compromise_k": 32}  # a larger value widens its slider

CONTROLS = {  # name -> widget kind; dropdown options come from the RunConfig Literal types
    "pair_mode": "dropdown",
    "sampler": "dropdown",
    "n_hidden_layers": "slider",
    "augment": "checkbox",
    "pretrain": "checkbox",
    "gradient_method": "dropdown",
    "gradvac_beta": "slider",
    "smart_weight": "float",
    "compromise": "checkbox",
    "compromise_k": "slider",
    "compromise_combine": "dropdown",
    "head": "dropdown",
    "head_size": "dropdown",
    "head_cls": "checkbox",
    "head_tasks": "dropdown",
    "pals": "checkbox",
    "pal_mode": "dropdown",
    "seed": "int",
    "epochs": "slider",
    "batches_per_epoch": "int",
    "cagrad_c": "float",
    "loss_weighting": "dropdown",
    "loss_weighting_lr": "float",
    "dwa_temperature": "float",
    "compromise_divide": "checkbox",
    "lr": "float",
}


def description(name: str) -> Setting:
    """What a toggle means: its setting's description (a phase toggle's own)."""
    return PHASE_TOGGLES[name] if name in PHASE_TOGGLES else SETTINGS[name]


def applies(name: str, values: Any) -> bool:
    """Whether toggle ``name`` does anything with ``values`` (attributes: every config key and toggle): its
    setting's ``used_when``, the rule the run id follows too. The panel greys it out where it does not."""
    return description(name).used(values)


def make_control(name: str, value: Any) -> W.Widget:
    """The widget of one toggle, starting at ``value``; its tooltip is the config key and its help."""
    spec = description(name)
    low, high = (spec.range.low, spec.range.high) if spec.range else (None, None)
    allowed = f"; allowed: {spec.range.text}" if spec.range else ""
    kw = {
        "description": key_label(name),
        "tooltip": f"config key: {name}; {spec.help}{allowed}",
        "style": {"description_width": LABEL_WIDTH},
        "layout": {"width": CONTROL_WIDTH, "flex": "0 0 auto"},
    }
    if name == "head_size":
        return W.Dropdown(options=sorted({128, 256, value}), value=value, **kw)
    if name == "pal_mode":
        return W.Dropdown(options=[PAL_FROM_START, PAL_FINETUNE_ONLY], value=value, **kw)
    if CONTROLS[name] == "dropdown":  # options from the RunConfig Literal type: they never drift
        return W.Dropdown(options=list(get_args(field_types()[name])), value=value, **kw)
    if CONTROLS[name] == "checkbox":
        return W.Checkbox(value=bool(value), indent=False, **{**kw, "style": {"description_width": "initial"}})
    if CONTROLS[name] == "slider" and name in SLIDER_ENDS:  # compromise_k: the config checks it against its tasks
        end = max(SLIDER_ENDS[name], value) if high is None else min(high, max(SLIDER_ENDS[name], value))
        return W.IntSlider(value=value, min=low, max=end, **kw)
    if name == "gradvac_beta":  # a log slider from 1e-4 to the range's top
        return W.FloatLogSlider(
            value=value, base=10, min=-4, max=math.log10(high), step=0.25, readout_format=".0e", **kw
        )
    if CONTROLS[name] == "float":  # smart_weight: 0 = off, which a log slider cannot show
        # unbounded: a value out of range reaches the config's check, which says what was typed and what is
        # allowed (a bounded box would clamp -1 to 0 silently); the tooltip says the range
        return W.FloatText(value=value, step=1e-3 if name != "lr" else 1e-6, **kw)
    return W.IntText(value=value, **kw)  # seed, batches_per_epoch


def control_names(controls: list[str] | str | None, row: dict | None) -> list[str]:
    """The toggles to show: a list of control names, a preset (a notebook name), or by default the preset of
    ``row``'s notebook (the baselines' toggles for a custom configuration)."""
    if controls is None:
        controls = row["notebook"] if row and row["notebook"] in PRESETS else BASELINE_CONTROLS
    if isinstance(controls, str):
        if controls not in PRESETS:
            raise ValueError(f"controls: unknown preset {controls!r}; presets: {', '.join(PRESETS)}")
        controls = PRESETS[controls]
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise ValueError(f"controls: unknown control(s) {unknown}; allowed: {', '.join(CONTROLS)}")
    return list(dict.fromkeys(controls))
