"""The ablation panel: widgets for a subset of RunConfig keys, a Run button, a live dev curve, the results."""

from __future__ import annotations

import html
import traceback
from pathlib import Path
from typing import Any

import ipywidgets as W

from mtlib.config import PHASE_KEYS, REPO_ROOT, RunConfig
from mtlib.rundir import read_history, read_metrics
from mtlib.study.experiments import anchors, get_row, load_experiments
from mtlib.study.resolve import resolve_config
from mtlib.study.widgets.controls import (
    BASELINE_CONTROLS, CONTROLS, PAL_FINETUNE_ONLY, PAL_FROM_START, PHASE_TOGGLES, PRESETS, make_control,
)
from mtlib.study.widgets.render import dev_curve_png, error_html, results_html
from mtlib.train.identity import run_dir_for

# Fallbacks when experiments.yaml holds no such phase (it normally does: the `pretrain` anchor, the
# `pal_only` phase of advanced_pal_finetune); profiles shorten both through `phase_overrides`.
DEFAULT_PHASES = {
    "pretrain": {"name": "pretrain", "freeze": "encoder", "lr": 1e-3, "sampler": "random",
                 "gradient_method": "none", "compromise": False, "smart_weight": 0.0, "epochs": 1},
    "pal_only": {"name": "pal_only", "freeze": "all_but_pals", "lr": 1e-4},
}




# ------------------------------------------------------------------ the panel
class AblationPanel:
    """Widgets for a subset of RunConfig keys, starting from a profile and an experiments row.

    ``controls`` (a list of names, or a notebook name from PRESETS; default: the row's notebook, else
    the baseline toggles) picks what is shown; everything else keeps the row's value. Extra keyword
    arguments are fixed RunConfig overrides (e.g. ``data_dir``). ``panel.controls[name]`` is the widget
    of a toggle; ``panel.set(sampler="pal")`` sets several at once.
    """

    def __init__(self, profile: str, row: str | dict | None = None, controls: list[str] | str | None = None,
                 out_dir: str | Path | None = None, **overrides: Any):
        self.profile = profile
        self.row = get_row(row) if isinstance(row, str) else row
        self.fixed = dict(overrides)
        self.fixed["out_dir"] = str(out_dir) if out_dir is not None else str(REPO_ROOT / "outputs/runs/widgets")
        self._start_state()
        names = self._control_names(controls)
        self.controls: dict[str, W.Widget] = {n: self._make_control(n) for n in names}
        self.last_run_dir: Path | None = None
        self.last_error: BaseException | None = None
        self.history: list[dict] = []
        self.figure = None
        self._run_name = ""
        self._build_layout()
        for w in self.controls.values():
            w.observe(self._on_change, names="value")
        self._on_change()

    # -- the starting point: the row's config flattened to one set of values plus phase templates
    def _start_state(self) -> None:
        row = self.row
        # e.g. PALs on the finished AdvancedModel: here one run, the parent's phases first
        full = resolve_config(self.profile, row=row, inline_parent=True, **self.fixed)
        phases = [dict(ph) for ph in full.to_dict()["phases"]]
        names = [ph.get("name") for ph in phases]
        main = next((ph for ph in phases if ph.get("name") == "finetune"), None)
        main = main or next((ph for ph in phases if ph.get("name") not in ("pretrain", "pal_only")), None)
        self.main_phase = dict(main or {"name": "finetune"})
        self.templates = {n: self._phase_template(n, phases) for n in ("pretrain", "pal_only")}
        cfg = full.replace(phases=[])
        self.start = {**cfg.to_dict(), **{k: v for k, v in self.main_phase.items() if k != "name"}}
        self.start["pretrain"] = "pretrain" in names
        self.start["pal_mode"] = PAL_FINETUNE_ONLY if "pal_only" in names else PAL_FROM_START

    def _phase_template(self, name: str, row_phases: list[dict]) -> dict:
        found = next((ph for ph in row_phases if ph.get("name") == name), None)
        if found is None:
            found = anchors().get(name)
        if found is None:
            found = next((ph for r in load_experiments() for ph in r["config"].get("phases", [])
                          if ph.get("name") == name), None)
        return dict(found or DEFAULT_PHASES[name])

    def _control_names(self, controls: list[str] | str | None) -> list[str]:
        if controls is None:
            controls = self.row["notebook"] if self.row and self.row["notebook"] in PRESETS else BASELINE_CONTROLS
        if isinstance(controls, str):
            if controls not in PRESETS:
                raise ValueError(f"controls: unknown preset {controls!r}; presets: {', '.join(PRESETS)}")
            controls = PRESETS[controls]
        unknown = [c for c in controls if c not in CONTROLS]
        if unknown:
            raise ValueError(f"controls: unknown control(s) {unknown}; allowed: {', '.join(CONTROLS)}")
        return list(dict.fromkeys(controls))

    def _make_control(self, name: str) -> W.Widget:
        return make_control(name, self.start[name])

    def _build_layout(self) -> None:
        title = self.row["label"] if self.row else "custom configuration"
        origin = f"row <code>{html.escape(self.row['id'])}</code>: " if self.row else ""
        self.title = W.HTML(f"<b>Ablation panel</b> — {origin}{html.escape(title)} "
                            f"<span style='color:gray'>(profile {html.escape(str(self.profile))})</span>")
        self.run_button = W.Button(description="Run", button_style="primary", icon="play",
                                   tooltip="train this config in the kernel")
        self.run_button.on_click(self._on_run)
        self.status = W.Label(value="")
        self.message = W.HTML(value="")  # the config's run dir, or why it is invalid
        self.plot_output = W.Output()
        self.results = W.HTML(value="")
        self.log_output = W.Output(layout={"max_height": "12em", "overflow": "auto"})
        boxes = list(self.controls.values())
        grid = W.GridBox(boxes, layout=W.Layout(grid_template_columns="repeat(3, minmax(14em, 1fr))",
                                                 grid_gap="2px 12px"))
        self.widget = W.VBox([self.title, grid, W.HBox([self.run_button, self.status]), self.message,
                              self.plot_output, self.results, self.log_output])

    # -- values -> config
    def values(self) -> dict[str, Any]:
        """Every toggle's current value (hidden toggles keep the starting row's value)."""
        return {n: self.controls[n].value if n in self.controls else self.start[n] for n in CONTROLS}

    def set(self, **values: Any) -> "AblationPanel":
        unknown = [k for k in values if k not in self.controls]
        if unknown:
            raise KeyError(f"no control(s) {unknown} in this panel; shown: {', '.join(self.controls)}")
        for k, v in values.items():
            self.controls[k].value = v
        return self

    def overrides(self) -> dict[str, Any]:
        """The resolver overrides the widgets describe (phases included)."""
        vals = self.values()
        out = dict(self.fixed)
        main = dict(self.main_phase)
        for name in self.controls:
            if name in PHASE_TOGGLES:
                continue
            # a key the row sets in its main phase stays there (the pretrain phase keeps its own settings)
            if name in main and name in PHASE_KEYS:
                main[name] = vals[name]
            else:
                out[name] = vals[name]
        pal_late = vals["pals"] and vals["pal_mode"] == PAL_FINETUNE_ONLY
        if pal_late:
            main["train_pals"] = False
        phases = [self.templates["pretrain"]] if vals["pretrain"] else []
        phases.append(main)
        if pal_late:
            phases.append(self.templates["pal_only"])
        out["phases"] = [] if phases == [{"name": "finetune"}] else phases  # a bare finetune phase = no phases
        out["name"] = f"widget-{self.row['id'] if self.row else 'custom'}"
        if self.row is not None and self.row.get("init_from"):
            out["init_checkpoint"] = None  # the parent's phases are part of this one run
        return out

    def config(self) -> RunConfig:
        """The RunConfig of the current widget values; an invalid one is shown in the panel and raised."""
        try:
            cfg = resolve_config(self.profile, row=self.row, **self.overrides())
        except (ValueError, TypeError, KeyError) as e:
            self.message.value = error_html(f"invalid configuration: {e}")
            raise ValueError(f"invalid configuration: {e}") from e
        return cfg

    def _on_change(self, change=None, message: bool = True) -> None:
        vals = self.values()
        recurrent = vals["head"] != "mlp"
        relevant = {"gradvac_beta": vals["gradient_method"] == "gradvac", "compromise_k": vals["compromise"],
                    "compromise_combine": vals["compromise"], "head_size": recurrent, "head_cls": recurrent,
                    "head_tasks": recurrent, "pal_mode": vals["pals"]}
        for name, on in relevant.items():
            if name in self.controls:  # greyed out when it does not apply; its value is kept
                self.controls[name].disabled = not on
        try:
            cfg = self.config()
        except ValueError:
            self.run_button.disabled = True
            return
        self.run_button.disabled = False
        if not message:
            return
        rd = run_dir_for(cfg)
        state = ("finished: Run shows its results" if (rd / "metrics.json").exists()
                 else "unfinished: Run resumes it" if rd.exists() else "new")
        self.message.value = (f"<span style='color:gray'>run dir <code>{html.escape(str(rd))}</code> "
                              f"({state})</span>")

    # -- running
    def run(self) -> Path | None:
        """Train the current config (what the Run button does); returns the run dir, None on failure."""
        self._on_run(self.run_button)
        return self.last_run_dir if self.last_error is None else None

    def _on_run(self, _button=None) -> None:
        if self.run_button.description == "Running…":
            return
        self.last_error = None
        try:
            cfg = self.config()
        except ValueError as e:
            self.last_error = e
            self.status.value = "not run: invalid configuration"
            return
        self.run_button.disabled, self.run_button.description = True, "Running…"
        self.history, self.results.value, self._run_name = [], "", cfg.name
        self.status.value = f"training {cfg.name} (seed {cfg.seed}) …"
        self.log_output.outputs = ()
        try:
            with self.log_output:  # trainer prints and progress bars land here, not in the log console
                try:
                    run_dir = _train(cfg, self._on_row)
                except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - shown in the panel
                    self.last_error = e
            if self.last_error is not None:
                e = self.last_error
                interrupted = isinstance(e, KeyboardInterrupt)
                self.status.value = "interrupted: Run again resumes from the last epoch" if interrupted else "failed"
                detail = "" if interrupted else "".join(traceback.format_exception_only(type(e), e))
                self.message.value = error_html(f"{type(e).__name__}: {detail or 'interrupted'}")
                return
            self.last_run_dir = Path(run_dir)
            self.history = read_history(run_dir)  # the whole run, also when it resumed or was already finished
            self._draw()
            self._show_results()
            self.status.value = f"done: {run_dir}"
        finally:
            self.run_button.description = "Run"
            self._on_change(message=self.last_error is None)

    def _on_row(self, row: dict) -> None:
        self.history.append(row)
        if row.get("type") == "eval":
            self.status.value = (f"{row.get('phase_name', '')} epoch {row['epoch']}: dev mean {row['mean']:.3f} "
                                 f"({row['examples_seen']:,} examples seen)")
            self._draw()

    # -- output
    def _draw(self) -> None:
        """Dev scores per task and their mean against examples seen, into the plot Output widget."""
        if self.figure is None:  # no pyplot: nothing global, no double display by the inline backend
            from matplotlib.figure import Figure

            self.figure = Figure(figsize=(7.2, 3.4), layout="constrained")
            self.figure.add_subplot()
        png = dev_curve_png(self.figure, self.history, self._run_name)
        # set outputs directly: works with or without a kernel and replaces the previous frame
        self.plot_output.outputs = ({"output_type": "display_data", "metadata": {},
                                     "data": {"image/png": png, "text/plain": "<dev curve>"}},)

    def _show_results(self) -> None:
        self.results.value = results_html(read_metrics(self.last_run_dir), self.row)

    # -- display
    def display(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _ipython_display_(self) -> None:
        self.display()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _train(cfg: RunConfig, callback) -> Path:
    from mtlib.train.trainer import run

    return run(cfg, callback=callback)
