"""The ablation panel, driven programmatically (no frontend): widget values -> RunConfig -> a run."""

import json
import threading
import types
from typing import get_args

import pytest

from mtlib.notebook import widgets
from mtlib.config.run_config import field_types
from mtlib.results.labels import key_label
from mtlib.experiments.resolve import resolve_config
from mtlib.train.identity import run_dir_for
from mtlib.notebook.widgets import PAL_FINETUNE_ONLY, AblationPanel, interactive_frontend, show_panel


@pytest.fixture(autouse=True)
def _no_forced_frontend(monkeypatch):
    monkeypatch.delenv("MTLIB_INTERACTIVE", raising=False)
    monkeypatch.delenv("PAPERMILL", raising=False)


def panel(tmp_path, row=None, controls=None, **kw):
    return AblationPanel("smoke", row=row, controls=controls, out_dir=tmp_path / "runs", **kw)


# ------------------------------------------------------------------ values -> config
def test_dropdown_options_come_from_the_runconfig_types(tmp_path):
    p = panel(
        tmp_path, controls=["pair_mode", "sampler", "gradient_method", "head", "head_tasks", "compromise_combine"]
    )
    for key, w in p.controls.items():
        assert tuple(w.options) == get_args(field_types()[key]), key


def test_widget_values_flow_into_the_config(tmp_path):
    p = panel(tmp_path, row="base", controls=["sampler", "n_hidden_layers", "gradient_method", "seed", "epochs"])
    p.controls["sampler"].value = "round_robin"
    p.controls["n_hidden_layers"].value = 1
    p.set(gradient_method="pcgrad", seed=3, epochs=1)
    cfg = p.config()
    # the sampler is greyed out under a gradient method (it picks no task there): its value is not applied
    assert p.controls["sampler"].disabled
    assert (cfg.sampler, cfg.n_hidden_layers, cfg.gradient_method, cfg.seed, cfg.epochs) == (
        "random",
        1,
        "pcgrad",
        3,
        1,
    )
    assert p.target().row is None  # no paper row has this configuration: a run named after the changes
    assert p.target().cfg.name == "base+sampler=round_robin+n_hidden_layers=1+gradient_method=pcgrad+epochs=1"
    assert p.target().run_dir.parent.parent == tmp_path / "runs" / "widgets"
    assert cfg.backbone == "tiny-random"  # the rest comes from the profile
    p.set(gradient_method="none")
    assert p.config().sampler == "round_robin"


def test_custom_panel_is_named_custom_and_defaults_to_the_baseline_controls(tmp_path):
    p = panel(tmp_path)
    assert p.config().name == "custom"
    assert list(p.controls) == widgets.controls.BASELINE_CONTROLS


@pytest.mark.parametrize("row", ["base", "advanced", "pcgrad", "gradvac_smart", "lstm256_sts_cls", "compromise"])
def test_an_untouched_panel_reproduces_its_row(tmp_path, row):
    p = panel(tmp_path, row=row)
    assert p.config().settings_hash() == resolve_config("smoke", row=row, out_dir=str(tmp_path)).settings_hash()


def test_controls_default_to_the_rows_notebook(tmp_path):
    assert "gradient_method" in panel(tmp_path, row="pcgrad").controls
    assert "pal_mode" in panel(tmp_path, row="advanced_pal").controls
    assert "compromise_k" in panel(tmp_path, controls="06_gradient_compromise").controls


def test_individual_pretraining_toggle_adds_and_removes_the_phase(tmp_path):
    p = panel(tmp_path, row="base")
    assert p.config().phases == ()
    p.set(pretrain=True)
    phases = p.config().phases
    assert [ph["name"] for ph in phases] == ["pretrain", "finetune"]
    pre = phases[0]
    assert (pre["freeze"], pre["lr"], pre["sampler"], pre["gradient_method"]) == ("encoder", 1e-3, "random", "none")
    assert pre["epochs"] == 1 and pre["batches_per_epoch"] == 3  # the smoke profile's phase_overrides
    p.set(pretrain=False)
    assert p.config().phases == ()
    q = panel(tmp_path, row="advanced")
    assert q.controls["pretrain"].value is True
    q.set(pretrain=False)
    assert q.config().phases == ()


def test_a_key_the_row_sets_in_its_finetune_phase_is_changed_there(tmp_path):
    p = panel(tmp_path, row="pcgrad")
    assert p.controls["gradient_method"].value == "pcgrad"
    p.set(gradient_method="gradvac")
    pre, fine = p.config().phase_configs()
    assert fine.gradient_method == "gradvac" and pre.gradient_method == "none"


def test_pals_only_during_finetuning_adds_a_pal_only_phase(tmp_path):
    p = panel(tmp_path, row="advanced_pal")
    assert p.controls["pal_mode"].value == "from start"
    p.set(pal_mode=PAL_FINETUNE_ONLY)
    cfg = p.config()
    assert [ph["name"] for ph in cfg.phases] == ["pretrain", "finetune", "pal_only"]
    assert cfg.phases[1]["train_pals"] is False
    assert (cfg.phases[2]["freeze"], cfg.phases[2]["lr"]) == ("all_but_pals", 1e-4)
    p.set(pals=False)  # no PALs: the PAL mode does not apply
    assert p.controls["pal_mode"].disabled
    assert [ph["name"] for ph in p.config().phases] == ["pretrain", "finetune"]


def test_the_pal_finetune_row_becomes_one_run(tmp_path):
    cfg = panel(tmp_path, row="advanced_pal_finetune").config()
    assert cfg.init_checkpoint is None  # no finished AdvancedModel needed: its phases run first
    assert [ph["name"] for ph in cfg.phases] == ["pretrain", "finetune", "pal_only"]


def test_controls_that_do_not_apply_are_disabled(tmp_path):
    p = panel(tmp_path, controls="06_gradient_compromise")
    p.set(gradient_method="pcgrad", compromise=False)
    assert p.controls["gradvac_beta"].disabled and p.controls["compromise_k"].disabled
    p.set(gradient_method="gradvac", compromise=True)
    assert not p.controls["gradvac_beta"].disabled and not p.controls["compromise_combine"].disabled
    h = panel(tmp_path, controls="04_heads")
    assert h.controls["head_size"].disabled
    h.set(head="lstm", head_size=256)
    assert not h.controls["head_size"].disabled and h.config().head_size == 256


def test_unknown_controls_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown control"):
        panel(tmp_path, controls=["samplr"])
    with pytest.raises(ValueError, match="unknown preset"):
        panel(tmp_path, controls="99_nothing")
    with pytest.raises(KeyError, match="no control"):
        panel(tmp_path, controls=["sampler"]).set(head="rnn")


# ------------------------------------------------------------------ errors
def test_an_invalid_combination_is_shown_and_not_run(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(widgets.panel, "_train", lambda target, cb: calls.append(target))
    p = panel(tmp_path, controls=["pair_mode", "head"])
    p.set(pair_mode="concat_embed", head="rnn")
    assert "pair_mode" in p.message.value and "head" in p.message.value
    assert p.run_button.disabled
    with pytest.raises(ValueError, match="pair_mode"):
        p.config()
    p.run_button.click()  # a programmatic click ignores `disabled`: the handler checks again
    assert calls == [] and p.last_run_dir is None
    assert "invalid" in p.status.value and isinstance(p.last_error, ValueError)
    assert not list((tmp_path / "runs").glob("*"))
    p.set(head="mlp")
    assert not p.run_button.disabled and "no paper row" in p.message.value


def test_a_failing_run_is_reported_in_the_panel(tmp_path, monkeypatch):
    def boom(target, cb):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(widgets.panel, "_train", boom)
    p = panel(tmp_path, row="base")
    assert p.run() is None
    assert p.status.value == "failed: RuntimeError: out of memory, say" and "out of memory" in p.message.value
    assert not p.run_button.disabled and p.run_button.description == "Run"


# ------------------------------------------------------------------ running
def test_run_button_trains_in_the_background_draws_live_and_shows_the_results(tmp_path, monkeypatch):
    p = panel(tmp_path, row="base", controls=["sampler", "n_hidden_layers", "epochs"], batches_per_epoch=4)
    p.set(sampler="round_robin", n_hidden_layers=1, epochs=2)
    seen = []  # the buttons, the progress bar and the curve while the trainer runs
    real_draw = p._draw
    monkeypatch.setattr(
        p,
        "_draw",
        lambda: (
            seen.append((p.run_button.disabled, p.stop_button.disabled, p.progress.value, p.status.value)),
            real_draw(),
        ),
    )
    p.run_button.click()
    assert p.job is not None and p.wait(120)
    assert p.last_error is None, p.message.value
    run_dir = p.last_run_dir
    assert (
        run_dir == p.target().run_dir
        and run_dir.parent.name == "base+sampler=round_robin+n_hidden_layers=1-" + run_dir.parent.name.rsplit("-", 1)[1]
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    evals = [r for r in p.history if r["type"] == "eval"]
    assert len(evals) == 2 and all("mean" in r and "examples_seen" in r for r in evals)
    assert len(seen) >= 3 and seen[0][:2] == (True, False) and seen[0][3].startswith("running:")
    assert 0 < seen[0][2] < 1  # one epoch of two: half-way
    assert "image/png" in p.plot_output.outputs[0]["data"]
    assert f"{metrics['dev']['mean']:.3f}" in p.results.value
    assert "no paper row" in p.results.value and "tiny-random" in p.results.value
    assert not p.run_button.disabled and p.stop_button.disabled and p.status.value.startswith("done")
    assert p.progress.value == 1.0

    # Run again: the finished run is shown with its saved history, not trained again
    monkeypatch.setattr(widgets.panel, "_train", lambda target, cb: pytest.fail("trained again"))
    p.run_button.click()
    assert p.job is None and p.last_run_dir == run_dir and "not retrained" in p.status.value
    assert len([r for r in p.history if r["type"] == "eval"]) == 2


def test_a_rows_configuration_is_that_rows_run_and_paper_number(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    p = panel(tmp_path, row="gradvac")
    p.set(gradient_method="pcgrad")  # what the 03 panel showed as "widget-gradvac" compared with Vaccine
    t = p.target()
    assert t.row["id"] == "pcgrad" and t.cfg.name == "pcgrad"
    assert t.run_dir == run_dir_for(resolve_config("smoke", row="pcgrad", out_dir=str(runs), progress=False))
    q = panel(tmp_path, row="advanced_pal")
    q.set(pal_mode=PAL_FINETUNE_ONLY)  # "PALs only during finetuning": its own row, trained from its parent
    t = q.target()
    assert t.row["id"] == "advanced_pal_finetune" and [c.name for c in t.parents] == ["advanced"]
    assert t.cfg.init_checkpoint.endswith("best.pt") and "advanced-" in t.cfg.init_checkpoint

    base = panel(tmp_path, row="base")  # untouched: the row's own run, which "Train every row" reuses
    assert base.run(timeout=120) == run_dir_for(resolve_config("smoke", row="base", out_dir=str(runs), progress=False))
    assert "0.648" in base.results.value  # the paper's mean for the BaseModel row
    monkeypatch.setattr(widgets.panel, "_train", lambda target, cb: pytest.fail("trained again"))
    again = panel(tmp_path, row="base")
    assert "already ran" in again.message.value
    again.run_button.click()
    assert again.last_run_dir == base.last_run_dir and again.status.value.startswith("done")


def test_stop_leaves_a_run_that_resumes(tmp_path):
    p = panel(tmp_path, row="base", controls=["epochs"], batches_per_epoch=12, log_every=1)
    p.set(epochs=3)
    rows = []
    first_eval = threading.Event()
    real = p._on_row

    def on_row(row):
        real(row)
        rows.append(row)
        if row["type"] == "eval":
            first_eval.set()

    p._on_row = on_row
    p.run_button.click()
    assert first_eval.wait(120)
    p.stop_button.click()
    assert p.wait(120) and p.job.state == "stopped"
    assert p.status.value.startswith("stopped") and p.last_error is not None
    run_dir = p.target().run_dir
    assert (run_dir / "last.pt").is_file() and not (run_dir / "metrics.json").exists()
    assert not p.run_button.disabled and p.stop_button.disabled
    assert p.run(timeout=120) == run_dir  # Run again resumes from the last finished epoch
    assert json.loads((run_dir / "metrics.json").read_text())["resumed"]


def test_controls_have_human_labels_and_the_config_key_as_tooltip(tmp_path):
    p = panel(tmp_path, controls=list(widgets.CONTROLS))
    for key, w in p.controls.items():
        assert w.description == key_label(key) and key in w.tooltip
        assert w.description != key or "_" not in key  # no raw config keys
    assert p.controls["n_hidden_layers"].description == "hidden layers"


def test_the_panel_displays_as_its_widget(tmp_path):
    p = panel(tmp_path)
    assert p.widget.children[0] is p.title
    bundle = p._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("[ablation panel")  # a saved notebook without widget state: one line


# ------------------------------------------------------------------ frontend detection
def _fake_kernel(monkeypatch, allow_stdin):
    shell = types.SimpleNamespace(kernel=types.SimpleNamespace(_allow_stdin=allow_stdin))
    monkeypatch.setattr(widgets.frontend, "_shell", lambda: shell)


def test_interactive_frontend_follows_the_kernels_stdin_flag(monkeypatch):
    assert interactive_frontend() is False  # pytest: no kernel
    _fake_kernel(monkeypatch, True)
    assert interactive_frontend() is True  # JupyterLab, Notebook, VS Code
    _fake_kernel(monkeypatch, False)
    assert interactive_frontend() is False  # papermill / nbclient
    monkeypatch.setenv("MTLIB_INTERACTIVE", "1")
    assert interactive_frontend() is True
    _fake_kernel(monkeypatch, True)
    monkeypatch.setenv("MTLIB_INTERACTIVE", "0")
    assert interactive_frontend() is False
    monkeypatch.delenv("MTLIB_INTERACTIVE")
    monkeypatch.setenv("PAPERMILL", "1")
    assert interactive_frontend() is False


def test_show_panel_skips_without_a_frontend_and_builds_nothing(capsys):
    def factory():
        raise AssertionError("built under papermill")

    assert show_panel(factory) is None
    assert "skipped" in capsys.readouterr().out
    assert widgets.ablation_panel("smoke", row="base", enabled=False) is None


def test_show_panel_displays_in_a_frontend(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    _fake_kernel(monkeypatch, True)
    p = widgets.ablation_panel("smoke", row="base", out_dir=tmp_path)
    assert isinstance(p, AblationPanel) and shown == [p]


def test_interactive_frontend_in_real_kernels():
    """nbclient (what papermill runs) -> False; a client that allows stdin, as JupyterLab does -> True."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.manager import start_new_kernel

    code = "from mtlib.notebook.widgets import interactive_frontend; print(interactive_frontend())"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    assert nb.cells[0].outputs[0]["text"].strip() == "False"

    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        out = []
        hook = lambda msg: out.append(msg["content"].get("text", ""))  # noqa: E731
        kc.execute_interactive(code, allow_stdin=True, output_hook=hook, timeout=120)
        assert "".join(out).strip() == "True"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
