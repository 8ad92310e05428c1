"""The ablation panel: widgets for a subset of RunConfig keys, a Run button, a live dev curve, the results."""

from __future__ import annotations

import html
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ipywidgets as W

from mtlib.config.run_config import PHASE_KEYS, REPO_ROOT, RunConfig
from mtlib.rundir import read_history, read_metrics
from mtlib.experiments.rows import get_row
from mtlib.experiments.resolve import resolve_config
from mtlib.notebook.widgets.controls import (
    CONTROLS,
    PAL_FINETUNE_ONLY,
    PAL_FROM_START,
    PHASE_TOGGLES,
    applies,
    control_names,
    make_control,
)
from mtlib.notebook.widgets.jobs import WORKER, Job
from mtlib.notebook.widgets.phases import phase_template
from mtlib.notebook.widgets.render import (
    describe_html,
    dev_curve_png,
    epoch_fraction,
    error_html,
    problems,
    results_html,
)
from mtlib.notebook.widgets.target import Target, change_name, find_target


# ------------------------------------------------------------------ the panel
class AblationPanel:
    """Widgets for a subset of RunConfig keys, starting from a profile and an experiments row.

    ``controls`` (a list of names, or a notebook name from PRESETS; default: the row's notebook, else
    the baseline toggles) picks what is shown; everything else keeps the row's value. Extra keyword
    arguments are fixed RunConfig overrides (e.g. ``data_dir``). ``panel.controls[name]`` is the widget
    of a toggle; ``panel.set(sampler="pal")`` sets several at once.
    """

    def __init__(
        self,
        profile: str,
        row: str | dict | None = None,
        controls: list[str] | str | None = None,
        out_dir: str | Path | None = None,
        **overrides: Any,
    ):
        self.profile = profile
        self.row = get_row(row) if isinstance(row, str) else row
        self.fixed = dict(overrides)
        # rows' runs live in out_dir (where the notebook's "Train every row" writes), other runs in out_dir/widgets
        self.fixed["out_dir"] = str(out_dir) if out_dir is not None else str(REPO_ROOT / "outputs/runs")
        self.fixed.setdefault("progress", False)  # the panel draws its own progress bar and curve
        self._start_state()
        names = control_names(controls, self.row)
        self.controls: dict[str, W.Widget] = {n: self._make_control(n) for n in names}
        self.last_run_dir: Path | None = None
        self.last_error: BaseException | None = None
        self.history: list[dict] = []
        self.job: Job | None = None
        self.target_now: Target | None = None
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
        self.templates = {n: phase_template(n, phases) for n in ("pretrain", "pal_only")}
        cfg = full.replace(phases=[])
        self.start = {**cfg.to_dict(), **{k: v for k, v in self.main_phase.items() if k != "name"}}
        self.start["pretrain"] = "pretrain" in names
        self.start["pal_mode"] = PAL_FINETUNE_ONLY if "pal_only" in names else PAL_FROM_START

    def _make_control(self, name: str) -> W.Widget:
        return make_control(name, self.start[name])

    def _build_layout(self) -> None:
        title = self.row["label"] if self.row else "custom configuration"
        origin = f"starts from row <code>{html.escape(self.row['id'])}</code>: " if self.row else ""
        self.title = W.HTML(
            f"<b>Ablation panel</b> — {origin}{html.escape(title)} "
            f"<span style='color:gray'>(profile {html.escape(str(self.profile))})</span>"
        )
        self.run_button = W.Button(
            description="Run",
            button_style="primary",
            icon="play",
            tooltip="train this configuration in the background (the notebook stays usable)",
        )
        self.run_button.on_click(self._on_run)
        self.stop_button = W.Button(
            description="Stop",
            icon="stop",
            disabled=True,
            tooltip="stop after the next logged step; Run again resumes from the last epoch",
        )
        self.stop_button.on_click(self._on_stop)
        # the kernel handles a click after the cells it is running: say so, rather than seem to ignore it
        self.status = W.Label(
            value="ready (Run pressed while cells run starts when they finish)", layout={"flex": "1 1 auto"}
        )
        self.progress = W.FloatProgress(
            value=0.0, min=0.0, max=1.0, bar_style="info", layout={"width": "12em", "flex": "0 0 auto"}
        )
        self.message = W.HTML(value="")  # what the config is (its paper row, its run dir), or why it is invalid
        self.plot_output = W.Output()
        self.results = W.HTML(value="")
        wrap = W.Layout(display="flex", flex_flow="row wrap", align_items="center", grid_gap="4px 16px")
        controls = W.Box(list(self.controls.values()), layout=wrap)
        self.widget = W.VBox(
            [
                self.title,
                controls,
                W.Box([self.run_button, self.stop_button, self.progress, self.status], layout=wrap),
                self.message,
                self.plot_output,
                self.results,
            ]
        )
        for w, name in [
            (self.widget, "panel"),
            (controls, "controls"),
            (self.status, "status"),
            (self.message, "describe"),
            (self.plot_output, "curve"),
            (self.run_button, "run"),
            (self.stop_button, "stop"),
        ]:
            w.add_class(f"mtlib-{name}")  # stable names for tests/test_browser.py and custom CSS

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
        now = SimpleNamespace(**{**self.start, **vals})
        out = dict(self.fixed)
        main = dict(self.main_phase)
        for name in self.controls:
            if name in PHASE_TOGGLES or not applies(name, now):
                continue  # a greyed-out knob does nothing: its value is neither used nor checked
            # a key the row sets in its main phase stays there (the pretrain phase keeps its own settings)
            if name in main and name in PHASE_KEYS:
                main[name] = vals[name]
            else:
                out[name] = vals[name]
        pal_late = vals["pals"] and vals["pal_mode"] == PAL_FINETUNE_ONLY
        if pal_late:
            main["train_pals"] = False
        pretrain = {**self.templates["pretrain"], **({"train_pals": False} if pal_late else {})}
        phases = [pretrain] if vals["pretrain"] else []
        phases.append(main)
        if pal_late:
            phases.append(self.templates["pal_only"])
        out["phases"] = [] if phases == [{"name": "finetune"}] else phases  # a bare finetune phase = no phases
        out["name"] = self.row["id"] if self.row else "custom"  # renamed by find_target when it is no row
        if self.row is not None and self.row.get("init_from"):
            out["init_checkpoint"] = None  # the parent's phases are part of this one run
        return out

    def config(self) -> RunConfig:
        """The RunConfig of the current widget values; an invalid one is shown in the panel and raised."""
        try:
            cfg = resolve_config(self.profile, row=self.row, **self.overrides())
        except (ValueError, TypeError, KeyError) as e:
            self.message.value = error_html("invalid configuration:\n" + "\n".join(problems(str(e))))
            raise ValueError(f"invalid configuration: {e}") from e
        return cfg

    def changes(self) -> dict[str, Any]:
        """The toggles whose value differs from the starting row's (the seed names its own folder)."""
        return {n: w.value for n, w in self.controls.items() if w.value != self.start[n] and n != "seed"}

    def target(self) -> Target:
        """What Run runs: the experiments row this configuration is (its run under ``out_dir``), or a run
        named after the changes under ``<out_dir>/widgets``."""
        fixed = {k: v for k, v in self.fixed.items() if k not in ("out_dir", "name")}
        name = change_name(self.row["id"] if self.row else "custom", self.changes())
        return find_target(self.profile, self.config(), self.fixed["out_dir"], name, **fixed)

    def _on_change(self, change=None) -> None:
        now = SimpleNamespace(**{**self.start, **self.values()})  # the main phase's values, as the widgets say
        for name, w in self.controls.items():  # greyed out when its setting is not used; its value is kept
            w.disabled = not applies(name, now)
        try:
            target = self.target()
        except ValueError:
            self.run_button.disabled = True
            self.status.value = "not runnable: invalid configuration (below)"
            self.plot_output.outputs, self.results.value, self.progress.value = (), "", 0.0
            return
        if self.status.value.startswith("not runnable"):
            self.status.value = "ready"
        self.run_button.disabled = self.job is not None and self.job.state in ("queued", "running")  # one at a time
        self.message.value = describe_html(target)

    # -- running (on the kernel's panel-run thread; see jobs.py)
    def run(self, timeout: float | None = None) -> Path | None:
        """Run the current config and wait for it (what the Run button does, then waiting); the run dir, or
        None when it failed, stopped or was invalid."""
        self._on_run(self.run_button)
        if self.job is not None:
            self.job.wait(timeout)
        return self.last_run_dir if self.last_error is None else None

    def wait(self, timeout: float | None = None) -> bool:
        return self.job.wait(timeout) if self.job is not None else True

    def _on_run(self, _button=None) -> None:
        if self.job is not None and self.job.active:
            return
        self.last_error, self.job = None, None
        try:
            target = self.target()
        except ValueError as e:
            self.last_error = e
            self.status.value = "not run: invalid configuration"
            return
        self.target_now = target
        self.history, self.results.value, self.progress.value = [], "", 0.0
        self.plot_output.outputs = ()  # the last run's curve is not this run's
        if target.finished:  # a config that already ran is shown, not retrained
            return self._show_done(target, "already ran, shown (not retrained)")
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.job = WORKER.submit(Job(lambda cb: _train(target, cb), self._on_row, self._on_state))

    def _on_stop(self, _button=None) -> None:
        if self.job is not None and self.job.active:
            self.job.stop()
            self.status.value = f"{self.job.state}: stopping after the next logged step …"

    def _on_state(self, job: Job) -> None:
        t = self.target_now
        if job.state == "queued":
            ahead = f" ({job.ahead} run(s) ahead)" if job.ahead else ""
            self.status.value = f"queued: {t.cfg.name} seed {t.cfg.seed}{ahead}"
        elif job.state == "running":
            self.status.value = f"running: {t.cfg.name} seed {t.cfg.seed} …"
            self.progress.bar_style = "info"
        elif job.state == "done":
            self._show_done(t, "")
        else:
            self.last_error = job.error or RuntimeError(f"{job.state}: {job.reason}")
            self.status.value = f"{job.state}: {job.reason.splitlines()[-1] if job.reason else ''}"
            self.progress.bar_style = "warning" if job.state == "stopped" else "danger"
            if job.state == "failed":
                self.message.value = error_html(job.reason)
        if job.state in ("done", "failed", "stopped"):
            self.run_button.disabled, self.stop_button.disabled = False, True
            if job.state != "failed":
                self._on_change()

    def _show_done(self, target: Target, note: str) -> None:
        self.last_run_dir = target.run_dir
        self.history = read_history(target.run_dir)  # the whole run, also when it resumed or already ran
        self.progress.value, self.progress.bar_style = 1.0, "success"
        self._draw()
        self.results.value = results_html(read_metrics(target.run_dir), target.row)
        self.status.value = f"done: {target.run_dir}" + (f" ({note})" if note else "")
        self.message.value = describe_html(target)

    def _on_row(self, row: dict) -> None:
        if row.get("type") == "start":  # a new run (a row's parent trains first): its own curve
            self.history = []
        self.history.append(row)
        self.progress.value = epoch_fraction(self.target_now.cfg, self.history)
        if row.get("type") == "eval":
            self.status.value = (
                f"running: {self.target_now.cfg.name} — {row.get('phase_name', '')} epoch "
                f"{row['epoch']}: dev mean {row['mean']:.3f} ({row['examples_seen']:,} examples seen)"
            )
            self._draw()

    # -- output
    def _draw(self) -> None:
        """The live dev curve (``plots.dev_curves``), into the plot Output widget as a PNG."""
        png = dev_curve_png(self.history, self.target_now.cfg.name)
        # set outputs directly: works from the run thread, with or without a kernel, and replaces the last frame
        self.plot_output.outputs = (
            {"output_type": "display_data", "metadata": {}, "data": {"image/png": png, "text/plain": "<dev curve>"}},
        )

    # -- display
    def display(self) -> None:
        from IPython.display import display

        display(self)

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        # what a saved notebook shows where the widget state is not available: a line, not a VBox repr
        origin = f"row {self.row['id']}" if self.row else "a custom configuration"
        bundle["text/plain"] = (
            f"[ablation panel: {origin}, profile {self.profile}; run this cell in JupyterLab to use it]"
        )
        return bundle


def _train(target: Target, on_row) -> Path:
    """The row's parents first, then the run itself, in this process through the one executor (a finished run
    is found, not trained again); ``on_row`` sees every history row (it raises StopRequested on Stop)."""
    from mtlib.runs.executor import Run, execute
    from mtlib.runs.local import LocalEngine

    runs, parents = [], []
    for cfg in [*target.parents, target.cfg]:
        runs.append(Run(f"{cfg.name} seed{cfg.seed}", cfg, parents))
        parents = [runs[-1].key]
    sweep = execute(runs, LocalEngine(), [lambda event: event.row is not None and on_row(event.row)], show=False)
    sweep.raise_failures()
    return Path(sweep.runs[runs[-1].key].run_dir)
