"""Papermill's parameters are checked in the notebooks (issue 19): an unknown name or a bad value stops the
notebook with one line naming the parameter and the valid ones; outside papermill the check does nothing."""

from __future__ import annotations

import ast
import subprocess
import sys

import nbformat
import pytest

from mtlib.config.run_config import REPO_ROOT
from mtlib.notebook.parameters import ParameterError, cells_from_history, check_parameters
from mtlib.runs.notebook_runs import parameter_defaults

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("0*.ipynb"))
PARAMS = """# papermill parameters
profile = "quick"        # params/profiles/<profile>.yaml
seeds = None
out_dir = "outputs/runs"
progress = True
rows = None
overrides = {}
max_chars = 250
threshold = 0.5
data_dir = None
prediction_rows = ["base", "advanced"]"""


def namespace(injected: str | None, before: list[str] | None = None, after: list[str] | None = None) -> dict:
    """A kernel's globals after the parameters cell, papermill's injected cell (if any) and ``after``."""
    history = ["", "from mtlib.notebook import parameters", *(before or []), PARAMS]
    if injected is not None:
        history.append("# Parameters\n" + injected + "\n")
    history += after or []
    ns: dict = {}
    for cell in history[1:]:
        if not cell.startswith("from"):
            exec(cell, {}, ns)  # noqa: S102 - literal assignments only
    ns["In"] = history
    return ns


def refused(injected: str, notebook: str | None = None) -> str:
    with pytest.raises(ParameterError) as info:
        check_parameters(namespace(injected), notebook)
    text = str(info.value)
    assert "\n" not in text
    assert info.value._render_traceback_() == [f"ParameterError: {text}"]  # IPython shows this one line
    return text


def test_outside_papermill_it_does_nothing():
    check_parameters(namespace(None))  # JupyterLab: no injected cell
    check_parameters({"profile": "nonesuch"})  # no cell history at all
    check_parameters(namespace(None, after=["lr = -1", "progress = 'x'"]))  # the reader's own cells
    assert cells_from_history(["", "x = 1"]) is None


def test_valid_values_pass():
    check_parameters(
        namespace(
            'profile = "smoke"\nseeds = [1, 2]\nout_dir = "/tmp/x"\nprogress = False\n'
            'rows = ["pcgrad"]\noverrides = {"epochs": 2, "max_train_examples": 32}\n'
            'max_chars = 100\nthreshold = 1\ndata_dir = "/data"\nprediction_rows = ["base"]'
        ),
        notebook="03_gradient_methods",
    )
    check_parameters(namespace(f'profile = "{REPO_ROOT / "params" / "profiles" / "smoke.yaml"}"'))  # a YAML path
    check_parameters(namespace("data_dir = 3\nseeds = None\nrows = None"))  # None defaults take anything


def test_unknown_parameter_names_it_and_the_valid_ones():
    text = refused('profile = "smoke"\nlr = -1')
    assert text == (
        "parameter 'lr' is not a parameter of this notebook; its parameters: profile, seeds, out_dir, "
        "progress, rows, overrides, max_chars, threshold, data_dir, prediction_rows"
    )


@pytest.mark.parametrize(
    "injected, expected",
    [
        ("progress = 'notabool'", "parameter 'progress' = 'notabool': expected True or False, as its default True"),
        ("progress = 1", "parameter 'progress' = 1: expected True or False"),
        ("max_chars = 2.5", "parameter 'max_chars' = 2.5: expected an int, as its default 250"),
        ("max_chars = True", "parameter 'max_chars' = True: expected an int"),
        ("threshold = 'high'", "parameter 'threshold' = 'high': expected a number, as its default 0.5"),
        ("out_dir = None", "parameter 'out_dir' = None: expected a string, as its default 'outputs/runs'"),
        ("profile = 'nonexisting'", "parameter 'profile': profile 'nonexisting' not found at "),
        ("profile = 3", "parameter 'profile' = 3: expected a profile name"),
        ("seeds = 3", "parameter 'seeds' = 3: expected None (the profile's seeds) or a list of ints, e.g. [1, 2]"),
        ("seeds = '[1, 2]'", "give lists and mappings with -y, e.g. -y 'seeds: [1, 2]'"),
        ("seeds = [1, True]", "parameter 'seeds' = [1, True]: expected None"),
        ("seeds = []", "parameter 'seeds' = []: expected None"),
        (
            "rows = ['base']",
            "parameter 'rows' = ['base']: 'base' is not among the rows of 03_gradient_methods: "
            "pcgrad, gradvac, gradvac_smart",
        ),
        (
            "rows = 'pcgrad'",
            "parameter 'rows' = 'pcgrad': expected None (every row of this notebook) or a list of "
            "row ids; rows of 03_gradient_methods: pcgrad",
        ),
        (
            "prediction_rows = ['base', 'nope']",
            "parameter 'prediction_rows' = ['base', 'nope']: 'nope' is not among "
            "the row ids of params/experiments.yaml: ",
        ),
        ("prediction_rows = None", "parameter 'prediction_rows' = None: expected a list of row ids"),
        ("overrides = {'epochz': 1}", "parameter 'overrides': unknown config key 'epochz'; allowed keys: "),
        ("overrides = {'lr': 'x'}", "parameter 'overrides': key 'lr' has value 'x' (str); expected a number"),
        ("overrides = {'seed': 3}", "parameter 'overrides' = {'seed': 3}: 'seed' cannot be overridden here"),
        ("overrides = [1]", "parameter 'overrides' = [1]: expected a mapping of config keys"),
    ],
)
def test_bad_value_is_one_line_naming_the_parameter(injected, expected):
    assert expected in refused(injected, notebook="03_gradient_methods")


def test_every_problem_on_the_one_line_profile_first():
    text = refused("lr = -1\nprogress = 'x'\nprofile = 'nonexisting'\noverrides = {'epochs': 1}\nepochs = 2")
    assert text.startswith("parameters 'lr', 'epochs' are not parameters of this notebook; its parameters: profile, ")
    assert text.index("parameter 'profile'") < text.index("parameter 'progress'")
    assert "parameter 'overrides'" not in text  # not resolvable without a profile; the profile's error says why


def test_the_last_cells_of_the_history_count():
    # a notebook run twice in one kernel (or the parameters cell edited): the last of each cell counts
    ns = namespace("progress = False", after=["# Parameters\nnew_name = 1\n"])
    with pytest.raises(ParameterError, match="'new_name' is not a parameter"):
        check_parameters(ns)
    ns = namespace("progress = False", before=["# papermill parameters\nnew_name = 0"])
    check_parameters(ns)  # the earlier parameters cell is not the notebook's any more
    ns["In"].append("# papermill parameters\nprogress = True\nnew_name = 0")
    ns["In"].append("# Parameters\nnew_name = 1\n")
    check_parameters(ns)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_checks_right_after_its_parameters(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params, check = code[1], code[2]
    assert "parameters" in params.metadata.get("tags", []) and params.source.startswith("# papermill parameters")
    tree = ast.parse(check.source)
    assert len(tree.body) == 1 and ast.unparse(tree.body[0].value).startswith(
        "parameters.check_parameters(globals()"
    )  # one call, no logic
    assert not check.outputs and check.execution_count is None
    has_rows = "rows" in parameter_defaults(nb)
    assert (f'notebook="{path.stem}"' in check.source) == has_rows
    # the notebook's own defaults, as if papermill had passed every one of them, pass
    ns: dict = {}
    exec(params.source, {}, ns)  # noqa: S102 - literal assignments only
    injected = "\n".join(f"{k} = {v!r}" for k, v in ns.items())
    ns["In"] = ["", code[0].source, params.source, "# Parameters\n" + injected + "\n"]
    check_parameters(ns, path.stem if has_rows else None)


def _papermill(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "papermill", *args, "--no-progress-bar", "-k", "python3"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )


def test_papermill_cli_unknown_parameter_fails_with_one_line(tmp_path):
    # the command: before, "Passed unknown parameter: lr", training on the profile's lr, exit 0
    out = tmp_path / "03.ipynb"
    proc = _papermill(
        str(REPO_ROOT / "notebooks" / "03_gradient_methods.ipynb"),
        str(out),
        "-p",
        "profile",
        "smoke",
        "-p",
        "out_dir",
        str(tmp_path / "runs"),
        "-p",
        "figures_dir",
        str(tmp_path / "fig"),
        "-p",
        "lr",
        "-1",
    )
    assert proc.returncode != 0
    line = (
        "ParameterError: parameter 'lr' is not a parameter of this notebook; its parameters: profile, seeds, "
        "out_dir, figures_dir, progress, rows, overrides, show_widgets"
    )
    assert proc.stderr.strip().splitlines()[-1] == line, proc.stderr[-3000:]
    assert "PapermillExecutionError" in proc.stderr
    errors = [
        o
        for c in nbformat.read(out, as_version=4).cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert len(errors) == 1 and errors[0].traceback == [line]  # the notebook shows the one line, no traceback
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_papermill_bad_values_fail_before_anything_runs(tmp_path):
    import papermill as pm

    md = tmp_path / "results.md"
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(
            str(REPO_ROOT / "notebooks" / "07_results.ipynb"),
            str(tmp_path / "07.ipynb"),
            parameters={
                "profile": "nonexisting",
                "progress": "notabool",
                "out_dir": str(tmp_path / "runs"),
                "figures_dir": str(tmp_path / "fig"),
                "results_md": str(md),
            },
            kernel_name="python3",
            progress_bar=False,
            cwd=str(REPO_ROOT),
        )
    err = info.value
    assert err.ename == "ParameterError" and len(err.traceback) == 1
    assert err.evalue.startswith("parameter 'profile': profile 'nonexisting' not found at ")
    assert "available: " in err.evalue and "smoke" in err.evalue
    assert "parameter 'progress' = 'notabool': expected True or False, as its default True" in err.evalue
    assert not md.exists()
