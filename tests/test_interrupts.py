"""Ctrl-C and SIGTERM end ``python -m mtlib run``, ``sweep`` (in this process, on ``--workers 2``, on Ray) and
``workbook`` (its pre-run's workers, a notebook's kernel) cleanly (mtlib.runs.interrupts): one
``interrupted: ...`` line on stderr and no traceback, exit 130 (SIGINT) or 143 (SIGTERM), no process of theirs
left, no run lock or temporary folder left; the same command again resumes (a run: to the metrics of an
uninterrupted one). Workers also end when the sweep dies by SIGKILL (PR_SET_PDEATHSIG, and the fallback).

Each command runs in a child process; the signal goes out when the child shows a concrete sign (a run's
history row or last.pt), never after a fixed sleep. The children reset SIGINT to its default: a shell's
background job (how a CI may start pytest) ignores it, and an ignored SIGINT stays ignored by design.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from mtlib.experiments.resolve import resolve_config
from mtlib.train.trainer import run

REPO = Path(__file__).resolve().parents[1]
TIMING = {"train_seconds", "final_eval_seconds", "resumed", "speed", "code"}  # metrics that may differ
SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]
# 2 epochs of 300 updates: ~4 s an epoch here, so the signal sent once epoch 1's last.pt is written lands
# well inside epoch 2 even on a loaded machine
RUN_SETTINGS = {"max_train_examples": 32, "batches_per_epoch": 300, "epochs": 2}


# ---------------------------------------------------------------------------------------------- helpers
def _env(tmp: Path, own_tmpdir: bool = True) -> dict:
    (tmp / "tmp").mkdir(exist_ok=True)
    # TMPDIR: the pool's log folder and the workbook's event files land where the test can look for them (not
    # Ray's: its socket paths under pytest's folder pass the 107 bytes AF_UNIX allows)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return {**env, "TMPDIR": str(tmp / "tmp")} if own_tmpdir else env


def _popen(args: list[str], tmp: Path, name: str, own_tmpdir: bool = True) -> subprocess.Popen:
    """``python <args>`` with stdout and stderr in files (a pipe nobody reads could block it)."""
    out, err = open(tmp / f"{name}.out", "w"), open(tmp / f"{name}.err", "w")
    with out, err:
        proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=out,
            stderr=err,
            env=_env(tmp, own_tmpdir),
            cwd=tmp,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    proc.err_file = tmp / f"{name}.err"
    return proc


def _wait_for(sign, proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not sign():
        if proc.poll() is not None:
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}: {_stderr(proc)[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.1)


def _stderr(proc: subprocess.Popen) -> str:
    return proc.err_file.read_text()


def _rows(pattern: str, tmp: Path) -> list[Path]:
    """History files under ``tmp`` matching ``pattern`` that hold a row."""
    return [p for p in tmp.glob(pattern) if p.stat().st_size]


def _interrupt(proc: subprocess.Popen, sig: int, timeout: float = 120) -> tuple[int, list[str]]:
    """Send ``sig``; the exit code and stderr's lines once it ended (SIGKILL after ``timeout``: a hang)."""
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{proc.args} did not end within {timeout} s of the signal")
    return code, _stderr(proc).splitlines()


def _assert_clean_end(code: int, err: list[str], sig: int, starts: str) -> str:
    """Exit 128 + sig, exactly one ``interrupted:`` line (starting as ``starts``), no traceback."""
    assert code == 128 + sig, "\n".join(err)
    lines = [line for line in err if line.startswith("interrupted:")]
    assert len(lines) == 1, "\n".join(err)
    assert not any("Traceback" in line for line in err), "\n".join(err)
    assert lines[0].startswith(f"interrupted: {starts}"), lines[0]
    assert "run the same command again to" in lines[0], lines[0]
    return lines[0]


def _processes(pid: int) -> list[tuple[int, str]]:
    """Every descendant of ``pid`` as (pid, start time) from /proc: a pid reused later is not taken for it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append((child, _start_time(child)))
            todo.append(child)
    return out


def _start_time(pid: int) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie has ended


def _assert_all_gone(processes: list[tuple[int, str]], within: float = 15) -> None:
    deadline = time.monotonic() + within
    while alive := [pid for pid, t in processes if t is not None and _start_time(pid) == t]:
        if time.monotonic() > deadline:
            for pid in alive:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    print(pid, f.read().replace(b"\0", b" ")[:200])
            pytest.fail(f"processes left running: {alive}")
        time.sleep(0.2)


def _assert_no_locks(root: Path) -> None:
    left = [str(p) for p in root.rglob("*") if p.name == ".lock" or ".tmp" in p.name]
    assert not left, f"left behind: {left}"


def _temp_folders(tmp: Path) -> list[str]:
    return [p.name for p in (tmp / "tmp").iterdir() if p.name.startswith(("mtlib-sweep-", "mtlib-workbook-"))]


def _sets(data_dir: Path, **more) -> list[str]:
    return [a for k, v in {"data_dir": str(data_dir), **RUN_SETTINGS, **more}.items() for a in ("--set", f"{k}={v}")]


def _comparable(run_dir: Path) -> tuple[dict, list[dict]]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return (
        {k: v for k, v in metrics.items() if k not in TIMING},
        [{k: v for k, v in row.items() if k != "wall"} for row in history],
    )


# ---------------------------------------------------------------------------------------------- run
@pytest.fixture(scope="module")
def uninterrupted(small_data_dir, tmp_path_factory) -> Path:
    """The run the interrupted ones must end as (trained in this process: same code, same config)."""
    out = tmp_path_factory.mktemp("whole")
    return run(resolve_config("smoke", out_dir=str(out), data_dir=str(small_data_dir), **RUN_SETTINGS))


@pytest.mark.parametrize("sig", SIGNALS)
def test_run_ends_in_one_line_and_resumes_to_the_uninterrupted_metrics(sig, tmp_path, small_data_dir, uninterrupted):
    args = ["-m", "mtlib", "run", "smoke", "--set", f"out_dir={tmp_path / 'runs'}", *_sets(small_data_dir)]
    proc = _popen(args, tmp_path, "run")
    _wait_for(lambda: list(tmp_path.glob("runs/*/*/last.pt")), proc, "epoch 1's last.pt")
    (run_dir,) = [p.parent for p in tmp_path.glob("runs/*/*/last.pt")]
    code, err = _interrupt(proc, sig)
    line = _assert_clean_end(code, err, sig, f"training {run_dir}; ")
    assert line.endswith(f"resume from {run_dir / 'last.pt'} (its last finished epoch)"), line
    assert not (run_dir / "metrics.json").exists(), "the run finished before the signal landed"
    _assert_no_locks(tmp_path / "runs")
    again = subprocess.run(
        [sys.executable, *args], env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and again.stdout.strip() == str(run_dir), again.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text())["resumed"]  # from last.pt, not from scratch
    assert _comparable(run_dir) == _comparable(uninterrupted)


# ---------------------------------------------------------------------------------------------- sweep
@pytest.mark.parametrize("sig", SIGNALS)
def test_sweep_on_workers_stops_them_and_the_same_command_resumes(sig, tmp_path, small_data_dir):
    """The case of the issue: SIGTERM used to leave both workers training, holding their runs' locks (a new
    sweep got "in use by pid ...") and the log folder in $TMPDIR."""
    args = [
        "-m",
        "mtlib",
        "sweep",
        "--profile",
        "smoke",
        "--rows",
        "base",
        "gradvac",
        "--out",
        str(tmp_path / "runs"),
        "--workers",
        "2",
        *_sets(small_data_dir),
    ]
    proc = _popen(args, tmp_path, "sweep")
    _wait_for(lambda: len(list(tmp_path.glob("runs/*/*/last.pt"))) == 2, proc, "both runs' last.pt")
    workers = _processes(proc.pid)
    assert len(workers) == 2, workers
    code, err = _interrupt(proc, sig)
    line = _assert_clean_end(code, err, sig, "sweep of 2 run(s), 0 done, 2 running")
    assert f"resume from their last.pt (the last finished epoch) under {tmp_path / 'runs'}" in line
    _assert_all_gone(workers)
    assert not _temp_folders(tmp_path)
    _assert_no_locks(tmp_path / "runs")
    if sig == signal.SIGTERM:  # once: the same command resumes both runs and finishes
        again = subprocess.run(
            [sys.executable, *args], env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert again.returncode == 0 and "[sweep] 2 done, 0 failed of 2" in again.stderr, again.stderr[-3000:]
        for metrics in tmp_path.glob("runs/*/*/metrics.json"):
            assert json.loads(metrics.read_text())["resumed"], metrics


def test_sweep_in_this_process_ends_in_one_line(tmp_path, small_data_dir):
    args = [
        "-m",
        "mtlib",
        "sweep",
        "--profile",
        "smoke",
        "--rows",
        "base",
        "--out",
        str(tmp_path / "runs"),
        *_sets(small_data_dir),
    ]
    proc = _popen(args, tmp_path, "sweep")
    _wait_for(lambda: _rows("runs/*/*/history.jsonl", tmp_path), proc, "a history row")
    code, err = _interrupt(proc, signal.SIGINT)
    _assert_clean_end(code, err, signal.SIGINT, "sweep of 1 run(s), 0 done, 1 running (base seed11711)")
    _assert_no_locks(tmp_path / "runs")


def test_sweep_on_ray_ends_in_one_line_and_stops_its_cluster(tmp_path, small_data_dir):
    pytest.importorskip("ray")
    args = [
        "-m",
        "mtlib",
        "sweep",
        "--engine",
        "ray",
        "--profile",
        "smoke",
        "--rows",
        "base",
        "--out",
        str(tmp_path / "runs"),
        *_sets(small_data_dir),
    ]
    proc = _popen(args, tmp_path, "sweep", own_tmpdir=False)
    _wait_for(lambda: _rows("runs/*/*/history.jsonl", tmp_path), proc, "a history row")
    # the run writes history before the driver has its 'started' event: wait until the driver says it runs
    _wait_for(lambda: ", 1 running" in _stderr(proc), proc, "the driver's running line")
    cluster = _processes(proc.pid)  # gcs, raylet, the run's worker, ...
    code, err = _interrupt(proc, signal.SIGTERM)  # ray.init puts a handler of its own on SIGTERM
    _assert_clean_end(code, err, signal.SIGTERM, "sweep of 1 run(s), 0 done, 1 running")
    _assert_all_gone(cluster, within=30)
    _assert_no_locks(tmp_path / "runs")  # the cancelled task's run unwound before the cluster went


def test_workers_end_when_the_sweep_is_killed(tmp_path, small_data_dir):
    """SIGKILL leaves the sweep no time to stop its workers: they end by themselves (PR_SET_PDEATHSIG)."""
    args = [
        "-m",
        "mtlib",
        "sweep",
        "--profile",
        "smoke",
        "--rows",
        "base",
        "--out",
        str(tmp_path / "runs"),
        "--workers",
        "1",
        *_sets(small_data_dir),
    ]
    proc = _popen(args, tmp_path, "sweep")
    _wait_for(lambda: _rows("runs/*/*/history.jsonl", tmp_path), proc, "a history row")
    workers = _processes(proc.pid)
    assert len(workers) == 1, workers
    proc.kill()
    proc.wait()
    _assert_all_gone(workers)


def test_without_pdeathsig_the_watch_thread_ends_the_worker(tmp_path):
    """The fallback (not Linux, or a parent that died before prctl): a thread polling the parent's pid."""
    child = textwrap.dedent("""
        import ctypes, sys, time
        def no_prctl(*args, **kwargs):
            raise OSError("no prctl here")
        ctypes.CDLL = no_prctl  # only the watching thread is left
        from mtlib.runs.interrupts import die_with_parent, raised_on_signals
        import os
        die_with_parent(os.getppid())
        with raised_on_signals():
            try:
                print("ready", flush=True)
                time.sleep(120)
            except KeyboardInterrupt:
                open(sys.argv[1], "w").write("unwound")
    """)
    parent = (
        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}, sys.argv[1]]); "
        "time.sleep(120)"
    )
    proc = _popen(["-c", parent, str(tmp_path / "unwound")], tmp_path, "parent")
    _wait_for(lambda: "ready" in (tmp_path / "parent.out").read_text(), proc, "the child's start")
    orphan = _processes(proc.pid)
    proc.kill()
    proc.wait()
    _assert_all_gone(orphan, within=10)
    assert (tmp_path / "unwound").read_text() == "unwound"  # SIGTERM raised Interrupted: its finally ran


# ---------------------------------------------------------------------------------------------- workbook
def _workbook(tmp: Path, folder: Path) -> list[str]:
    """``python -m mtlib workbook --profile smoke`` on the notebooks of ``folder`` (not the repository's: they
    write into outputs/), from a child that points the workbook at them."""
    code = textwrap.dedent(f"""
        from pathlib import Path
        from mtlib.runs import workbook
        from mtlib.cli import main
        listed = workbook.list_notebooks
        workbook.list_notebooks = lambda only=None, folder=None: listed(only, Path({str(folder)!r}))
        raise SystemExit(main(["workbook", "--profile", "smoke", "--out", {str(tmp / "nbout")!r}, "--workers", "2"]))
    """)
    return ["-c", code]


def _notebook(path: Path, call: str, out_dir: Path, data_dir: Path, more: str = "") -> None:
    params = nbformat.v4.new_code_cell(
        f"profile = 'quick'\nout_dir = {str(out_dir)!r}\ndata_dir = {str(data_dir)!r}\n{more}"
    )
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(
        cells=[params, nbformat.v4.new_code_cell("from mtlib.notebook import runs"), nbformat.v4.new_code_cell(call)]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


SETTINGS = ", ".join(f"{k}={v!r}" for k, v in RUN_SETTINGS.items())


def test_workbook_in_its_pre_run_stops_the_workers(tmp_path, small_data_dir):
    overrides = {"data_dir": str(small_data_dir), **RUN_SETTINGS}
    _notebook(
        tmp_path / "nbs" / "02_baselines.ipynb",  # two runs it declares: the pre-run trains them on 2 workers
        "runs.run_rows('02_baselines', profile, only=rows, out_dir=out_dir, **overrides)",
        tmp_path / "runs",
        small_data_dir,
        f"rows = ['base', 'base_pal']\noverrides = {overrides!r}",
    )
    proc = _popen(_workbook(tmp_path, tmp_path / "nbs"), tmp_path, "workbook")
    _wait_for(lambda: len(_rows("runs/*/*/history.jsonl", tmp_path)) == 2, proc, "both runs' history rows")
    workers = _processes(proc.pid)
    assert len(workers) == 2, workers
    code, err = _interrupt(proc, signal.SIGTERM)
    _assert_clean_end(code, err, signal.SIGTERM, "the workbook's pre-run of 2 run(s)")
    _assert_all_gone(workers)
    assert not _temp_folders(tmp_path)
    _assert_no_locks(tmp_path / "runs")


def test_workbook_in_a_notebook_stops_its_kernel(tmp_path, small_data_dir):
    # a notebook that declares no rows: its kernel trains the run it asks for by id itself
    _notebook(
        tmp_path / "nbs" / "01_one.ipynb",
        f"runs.run_ids(['base'], profile, out_dir=out_dir, data_dir=data_dir, {SETTINGS})",
        tmp_path / "runs",
        small_data_dir,
    )
    proc = _popen(_workbook(tmp_path, tmp_path / "nbs"), tmp_path, "workbook")
    _wait_for(lambda: _rows("runs/*/*/history.jsonl", tmp_path), proc, "the kernel's history row")
    kernel = _processes(proc.pid)
    assert kernel, "no kernel process"
    code, err = _interrupt(proc, signal.SIGINT)
    _assert_clean_end(code, err, signal.SIGINT, "the workbook's notebooks (01_one running, 0 finished)")
    _assert_all_gone(kernel)
    assert not _temp_folders(tmp_path)
    _assert_no_locks(tmp_path / "runs")  # SIGINT reached the kernel's cell: the run unwound
