"""Fault injection on the trainer's run directory: kills at every fault point (SIGKILL, then resume), two
processes on one run, a full disk, damaged and malicious checkpoints, a NaN loss.

A killed run must resume to exactly what an uninterrupted run of the same config leaves: the same
metrics.json (but for timing fields), history rows (but for "wall"), best.pt tensors and prediction files,
and no leftovers.

The training processes are forked from a forkserver that has imported mtlib once (a fresh ``python -c``
costs ~5 s of imports per run); each child runs the equivalent of
``python -c "from mtlib.train.trainer import run; run(resolve_config(path))"`` with ``MTLIB_FAULT`` set,
and dies by SIGKILL at that point (exit code -9). Reference runs go through the same children, so a
comparison never depends on state left in the test process by other tests.
"""

from __future__ import annotations

import errno
import io
import json
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mtlib.config.run_config import RunConfig
from mtlib.rundir import CheckpointError, RunDirectory, RunLocked, load_checkpoint, read_history
from mtlib.rundir import atomic as rundir_atomic
from mtlib.rundir.checkpoint import FORMAT
from mtlib.experiments.resolve import resolve_config
from mtlib.train.identity import run_dir_for
from mtlib.train.steps import NumericFault
from mtlib.train.trainer import run

TIMING = {"train_seconds", "final_eval_seconds", "resumed", "speed"}  # metrics.json fields that may differ

# The smoke profile: 2 epochs of 6 updates (pal sampler), both epochs improve, so best.pt is written twice.
# The profile's phase_overrides make "pretrain" 1 epoch of 3 updates; finetune: 2 epochs of 4 updates.
CONFIGS = {
    "single": {"name": "single"},
    "two": {
        "name": "two",
        "phases": [{"name": "pretrain", "freeze": "encoder", "lr": 1e-3}, {"name": "finetune", "batches_per_epoch": 4}],
    },
}


def make_cfg(data_dir: Path, out_dir: Path, kind: str, **changes) -> RunConfig:
    return resolve_config(
        "smoke",
        out_dir=str(out_dir),
        data_dir=str(data_dir),
        max_train_examples=32,
        progress=False,
        threads=1,
        hidden_dropout=0.3,
        **{**CONFIGS[kind], **changes},
    )


# ---------------------------------------------------------------------------------------------- children
_CHILD = """
import os, sys
log = os.open({log!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.dup2(log, 1); os.dup2(log, 2)
os.environ.pop("MTLIB_FAULT", None)
if {fault!r}:
    os.environ["MTLIB_FAULT"] = {fault!r}
from mtlib.experiments.resolve import resolve_config
from mtlib.train.trainer import run
run(resolve_config({config!r}))
"""
_FORKSERVER = None


def _context():
    global _FORKSERVER
    if _FORKSERVER is None:
        _FORKSERVER = mp.get_context("forkserver")
        _FORKSERVER.set_forkserver_preload(["mtlib.train.trainer"])
    return _FORKSERVER


def train_in_child(cfg: RunConfig, fault: str | None = None, timeout: float = 180) -> int:
    """Train ``cfg`` in a fresh child process (``MTLIB_FAULT=fault``); its exit code (-9: SIGKILL)."""
    run_dir = run_dir_for(cfg)
    work = run_dir.parents[2] / "child"
    work.mkdir(exist_ok=True)
    config = work / f"{cfg.name}-{cfg.settings_hash()}.yaml"
    config.write_text(cfg.to_yaml(), encoding="utf-8")
    log = work / "child.log"
    code = _CHILD.format(log=str(log), fault=fault or "", config=str(config))
    proc = _context().Process(target=exec, args=(code, {"__name__": "__mtlib_child__"}))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail(f"training child ({fault}) hung; log {log}")
    if proc.exitcode not in (0, -signal.SIGKILL):
        pytest.fail(f"training child ({fault}) failed with exit code {proc.exitcode}:\n{log.read_text()[-3000:]}")
    return proc.exitcode


# ---------------------------------------------------------------------------------------------- comparing
def comparable_metrics(run_dir: Path) -> dict:
    return {k: v for k, v in json.loads((run_dir / "metrics.json").read_text()).items() if k not in TIMING}


def comparable_history(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall"} for r in read_history(run_dir)]


def assert_no_leftovers(run_dir: Path) -> None:
    left = [
        p.name
        for p in run_dir.iterdir()
        if p.name in ("last.pt", "failed.json", ".lock")
        or (p.name.startswith("phase") and p.name.endswith("-best.pt"))
        or ".tmp" in p.name
    ]
    assert not left, f"leftovers in the finished run {run_dir}: {left}"


def assert_same_run(got: Path, want: Path) -> None:
    """``got`` (interrupted and resumed) is the uninterrupted ``want`` but for timing."""
    assert (got / "metrics.json").is_file(), f"{got} did not finish"
    assert comparable_metrics(got) == comparable_metrics(want)
    assert comparable_history(got) == comparable_history(want)
    a = load_checkpoint(got / "best.pt")["model"]
    b = load_checkpoint(want / "best.pt")["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in b), [k for k in b if not torch.equal(a[k], b[k])][:5]
    preds = sorted(p.name for p in (want / "predictions").iterdir())
    assert preds and sorted(p.name for p in (got / "predictions").iterdir()) == preds
    for name in preds:
        assert (got / "predictions" / name).read_bytes() == (want / "predictions" / name).read_bytes(), name
    identities = [
        {k: v for k, v in json.loads((d / "identity.json").read_text()).items() if k != "instance"} for d in (got, want)
    ]  # the instance token tells two trainings of one run apart
    assert identities[0] == identities[1]
    conf = [
        {k: v for k, v in yaml.safe_load((d / "config.yaml").read_text()).items() if k != "out_dir"}
        for d in (got, want)
    ]
    assert conf[0] == conf[1]
    assert_no_leftovers(got)
    assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in want.iterdir())


def check_killed_at(run_dir: Path, fault: str) -> None:
    """Evidence that the kill landed where it was aimed (beyond the exit code)."""
    point = fault.rpartition(":")[0]
    history = read_history(run_dir) if (run_dir / "history.jsonl").exists() else []
    if point.startswith("write:"):
        name = point[len("write:") :]
        assert list(run_dir.glob(f".{name}.tmp*")), f"no temporary {name} left by a kill inside atomic_write"
        assert not (run_dir / "metrics.json").exists() or name != "metrics.json"
    elif point == "start":
        assert [r["type"] for r in history][-1] == "start"
    elif point == "before_metrics":
        assert history[-1]["type"] == "final" and not (run_dir / "metrics.json").exists()
    elif point == "after_metrics":
        assert (run_dir / "metrics.json").exists() and (run_dir / "last.pt").exists()
    elif point in ("epoch_end", "handover"):
        assert (run_dir / "last.pt").exists() and not (run_dir / "metrics.json").exists()
    if point != "after_metrics":
        assert not (run_dir / "metrics.json").exists()


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def references(small_data_dir, tmp_path_factory) -> dict[str, Path]:
    """One uninterrupted run of each config (in a child, like the interrupted ones)."""
    out = tmp_path_factory.mktemp("reference")
    refs = {}
    for kind in CONFIGS:
        cfg = make_cfg(small_data_dir, out, kind)
        assert train_in_child(cfg) == 0
        refs[kind] = run_dir_for(cfg)
        assert_no_leftovers(refs[kind])
    # the occurrences the kill cases aim at exist in these runs
    evals = lambda kind: [r for r in read_history(refs[kind]) if r["type"] == "eval"]  # noqa: E731
    assert [(r["epoch"], r["improved"]) for r in evals("single")] == [(1, True), (2, True)]
    assert [(r["phase"], r["epoch"], r["improved"]) for r in evals("two")] == [(0, 1, True), (1, 1, True), (1, 2, True)]
    return refs


KILLED_IDENTICALLY: list[str] = []  # kill cases whose resumed run matched the reference
KILL_ATTEMPTED: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def report_kills(request):
    """Prints "n of m kills resumed to an identical run" after the module's tests."""
    yield
    if not KILL_ATTEMPTED:
        return
    kills = lambda cases: sum(len(KILL_CASES[c][1]) for c in cases)  # noqa: E731
    line = (
        f"test_faults: {kills(KILLED_IDENTICALLY)} of {kills(KILL_ATTEMPTED)} kills "
        f"({len(KILLED_IDENTICALLY)} of {len(KILL_ATTEMPTED)} cases) resumed to an identical run"
    )
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("\n" + line)
    else:
        print(line)


# ---------------------------------------------------------------------------------------------- 1. kills
KILL_CASES = {
    # case id: (config, the faults of successive attempts; each attempt must die by SIGKILL)
    "single-start:1": ("single", ["start:1"]),
    "single-step:1": ("single", ["step:1"]),
    "single-step:9": ("single", ["step:9"]),  # epoch 2, resumes from epoch 1's last.pt
    "single-best:1": ("single", ["best:1"]),
    "single-best:2": ("single", ["best:2"]),  # best.pt of epoch 2 is ahead of last.pt (epoch 1)
    "single-epoch_end:1": ("single", ["epoch_end:1"]),
    "single-epoch_end:2": ("single", ["epoch_end:2"]),
    "single-handover:1": ("single", ["handover:1"]),
    "single-write:config.yaml:1": ("single", ["write:config.yaml:1"]),
    "single-write:history.jsonl:1": ("single", ["write:history.jsonl:1"]),
    "single-write:last.pt:1": ("single", ["write:last.pt:1"]),
    "single-write:best.pt:2": ("single", ["write:best.pt:2"]),
    "single-write:metrics.json:1": ("single", ["write:metrics.json:1"]),
    "single-before_metrics:1": ("single", ["before_metrics:1"]),
    "single-after_metrics:1": ("single", ["after_metrics:1"]),
    "two-step:5": ("two", ["step:5"]),  # finetune epoch 1, resumes from the pretrain phase's last.pt
    "two-best:1": ("two", ["best:1"]),
    "two-best:2": ("two", ["best:2"]),
    "two-epoch_end:1": ("two", ["epoch_end:1"]),
    "two-handover:1": ("two", ["handover:1"]),
    "two-handover:2": ("two", ["handover:2"]),
    "two-write:phase0-best.pt:1": ("two", ["write:phase0-best.pt:1"]),
    "two-write:last.pt:2": ("two", ["write:last.pt:2"]),
    "two-write:identity.json:1": ("two", ["write:identity.json:1"]),
    "two-before_metrics:1": ("two", ["before_metrics:1"]),
    # several kills in a row (counts start again in every process)
    "single-chain": ("single", ["step:9", "write:last.pt:1", "write:best.pt:1", "before_metrics:1"]),
    "two-chain": ("two", ["handover:1", "step:2", "write:best.pt:1", "epoch_end:1", "after_metrics:1"]),
}


@pytest.mark.parametrize("case", KILL_CASES)
def test_kill_and_resume_is_identical(case, references, small_data_dir, tmp_path):
    kind, faults = KILL_CASES[case]
    KILL_ATTEMPTED.append(case)
    cfg = make_cfg(small_data_dir, tmp_path / "runs", kind)
    run_dir = run_dir_for(cfg)
    for i, fault in enumerate(faults):
        code = train_in_child(cfg, fault)
        assert code == -signal.SIGKILL, f"attempt {i + 1}: fault point {fault} was never reached (exit {code})"
        check_killed_at(run_dir, fault)
    assert train_in_child(cfg) == 0
    assert_same_run(run_dir, references[kind])
    resumed = json.loads((run_dir / "metrics.json").read_text())["resumed"]
    assert len(resumed) <= len(faults)
    KILLED_IDENTICALLY.append(case)


def test_fault_point_names_with_colons(monkeypatch):
    killed = []
    monkeypatch.setattr(rundir_atomic.os, "kill", lambda pid, sig: killed.append(sig))
    monkeypatch.setattr(rundir_atomic, "_FAULT_COUNTS", {})
    monkeypatch.setenv("MTLIB_FAULT", "write:last.pt:2")
    rundir_atomic.fault_point("write:last.pt")
    rundir_atomic.fault_point("write:best.pt")
    assert killed == []
    rundir_atomic.fault_point("write:last.pt")
    assert killed == [signal.SIGKILL]
    monkeypatch.setenv("MTLIB_FAULT", "handover")  # no count: the first time
    rundir_atomic.fault_point("handover")
    assert killed == [signal.SIGKILL] * 2


# ---------------------------------------------------------------------------------------------- 2. the lock
def test_a_second_process_on_a_locked_run_is_refused(references, small_data_dir, tmp_path):
    cfg = make_cfg(small_data_dir, tmp_path / "runs", "single")
    run_dir = run_dir_for(cfg)
    assert train_in_child(cfg, "epoch_end:1") == -signal.SIGKILL  # a run half done
    files = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"}

    # another process holds the run (a python -c that takes the lock and waits)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from mtlib.rundir import RunDirectory\n"
            "d = RunDirectory(sys.argv[1]).lock(); print('locked', flush=True); sys.stdin.read(); d.unlock()",
            str(run_dir),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=rf"in use by pid {holder.pid} on "):
            run(cfg)
        assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"} == files
    finally:
        holder.kill()  # the holder dies without unlocking: the kernel releases its flock
        holder.wait()
    assert (run_dir / ".lock").exists()  # a stale lock file, no longer locked

    # the lock held by this very process (another RunDirectory object): refused as well
    with RunDirectory(run_dir).lock():
        with pytest.raises(RunLocked, match=rf"pid {os.getpid()} "):
            run(cfg)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == files  # unlock removed .lock

    assert train_in_child(cfg) == 0  # released: the run resumes and completes
    assert_same_run(run_dir, references["single"])


# ---------------------------------------------------------------------------------------------- 3. full disk
class _FullDisk(io.FileIO):
    """A file on a disk that fills up after ``room`` bytes."""

    def __init__(self, path, mode, room: int):
        super().__init__(path, mode)
        self.room = room

    def write(self, b) -> int:
        b = memoryview(b).cast("B")
        if len(b) > self.room:
            super().write(b[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(b)
        return super().write(b)


def test_full_disk_while_writing_last_pt(references, small_data_dir, tmp_path, monkeypatch):
    """The disk fills up inside torch.save of epoch 2's last.pt: a clear error, epoch 1's last.pt intact."""
    cfg = make_cfg(small_data_dir, tmp_path / "runs", "single")
    run_dir = run_dir_for(cfg)
    opened, partial = [], []

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):
        if Path(file).name.startswith(".last.pt.tmp") and "w" in mode:
            opened.append(file)
            if len(opened) == 2:  # the second last.pt (end of epoch 2)
                f = _FullDisk(file, mode, room=4096)
                partial.append(Path(file))
                return f
        return open(file, mode, *args, **kwargs)

    monkeypatch.setattr(rundir_atomic, "open", open_on_a_full_disk, raising=False)
    with pytest.raises(OSError) as info:
        run(cfg)
    monkeypatch.undo()
    err = info.value
    assert err.errno == errno.ENOSPC and "no space left" in str(err) and str(run_dir / "last.pt") in str(err)
    assert partial and not partial[0].exists()  # the half-written temporary file is gone
    assert not list(run_dir.glob(".*.tmp*")) and not (run_dir / "metrics.json").exists()
    last = load_checkpoint(run_dir / "last.pt")  # the previous last.pt, whole
    assert last["phase"]["progress"]["epoch"] == 1

    assert train_in_child(cfg) == 0  # space freed: resumes from epoch 1 and finishes
    assert_same_run(run_dir, references["single"])


def test_full_disk_while_writing_metrics(references, small_data_dir, tmp_path, monkeypatch):
    """fsync of metrics.json fails with ENOSPC: no metrics.json (not "finished"), nothing truncated."""
    cfg = make_cfg(small_data_dir, tmp_path / "runs", "single")
    run_dir = run_dir_for(cfg)
    real_fsync = os.fsync

    def fsync(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".metrics.json.tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(rundir_atomic.os, "fsync", fsync)
    with pytest.raises(OSError, match=r"no space left on device while writing .*metrics\.json"):
        run(cfg)
    monkeypatch.undo()
    assert not (run_dir / "metrics.json").exists() and not list(run_dir.glob(".*.tmp*"))
    assert load_checkpoint(run_dir / "last.pt")["phase"]["progress"]["epoch"] == 2
    assert train_in_child(cfg) == 0
    assert_same_run(run_dir, references["single"])


# ---------------------------------------------------------------------------------------------- 4. damage
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_last_pt_says_what_to_do(damage, references, small_data_dir, tmp_path):
    cfg = make_cfg(small_data_dir, tmp_path / "runs", "single")
    run_dir = run_dir_for(cfg)
    assert train_in_child(cfg, "epoch_end:1") == -signal.SIGKILL
    last = run_dir / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(len(data)))
    with pytest.raises(CheckpointError) as info:
        run(cfg)
    message = str(info.value)
    assert str(last) in message and "damaged" in message and f"Delete {last}" in message
    assert last.exists() and not (run_dir / "metrics.json").exists()
    last.unlink()  # as told
    assert train_in_child(cfg) == 0  # starts over and finishes
    assert_same_run(run_dir, references["single"])


class Payload:
    """Pickled by reference: loading it would import this module and build the object."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_in_a_checkpoint_is_refused(small_data_dir, tmp_path):
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model": {"w": torch.zeros(1)}, "x": Payload(str(marker))}, evil)
    custom = tmp_path / "custom.pt"
    torch.save({"format": FORMAT, "model": {}, "x": Path("/")}, custom)
    for path in (evil, custom):
        with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}.*damaged or not an mtlib checkpoint"):
            load_checkpoint(path)
    # as a run's resume point, and as an init_checkpoint
    cfg = make_cfg(small_data_dir, tmp_path / "runs", "single")
    run_dir = run_dir_for(cfg)
    run_dir.mkdir(parents=True)
    (run_dir / "last.pt").write_bytes(evil.read_bytes())
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(run_dir / 'last.pt'))}.*Delete"):
        run(cfg)
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(evil))}.*init_checkpoint"):
        run(cfg.replace(name="init", init_checkpoint=str(evil)))
    assert not marker.exists(), "a checkpoint's pickled code was executed"


# ---------------------------------------------------------------------------------------------- 5. NaN
PLACE = r"at phase (?P<phase>\d+ \(\w+\)), epoch (?P<epoch>\d+), step (?P<step>\w+), task (?P<task>sst|para|sts)"


def test_nan_loss_marks_the_run_failed(small_data_dir, tmp_path):
    cfg = make_cfg(small_data_dir, tmp_path / "runs", "single", lr=1e6)
    run_dir = run_dir_for(cfg)
    with pytest.raises(FloatingPointError, match=PLACE) as info:
        run(cfg)
    assert isinstance(info.value, NumericFault)
    assert (run_dir / "failed.json").is_file() and not (run_dir / "metrics.json").exists()
    failed = json.loads((run_dir / "failed.json").read_text())
    assert failed["kind"] == "NumericFault" and set(failed["where"]) == {"phase", "epoch", "step", "task"}
    message = str(info.value)
    if "init_checkpoint=" in message:  # the hint never names a checkpoint that does not exist
        assert Path(message.split("init_checkpoint=")[1].split()[0]).is_file()
    else:
        assert not (run_dir / "last.pt").exists() and not (run_dir / "best.pt").exists()
    assert run(cfg.replace(lr=1e-4)).joinpath("metrics.json").is_file()  # a changed config: another run


def test_nan_loss_in_a_later_phase_restarts_from_its_checkpoint(small_data_dir, tmp_path):
    cfg = make_cfg(
        small_data_dir,
        tmp_path / "runs",
        "two",
        phases=[{"name": "pretrain", "freeze": "encoder", "lr": 1e-3}, {"name": "finetune", "lr": 1e6}],
    )
    run_dir = run_dir_for(cfg)
    with pytest.raises(NumericFault, match=PLACE) as info:
        run(cfg)
    assert info.value.where["phase"] == "1 (finetune)"
    assert str(run_dir / "last.pt") in str(info.value) and "failed.json" in str(info.value)
    assert (run_dir / "failed.json").is_file() and not (run_dir / "metrics.json").exists()
    # the last good checkpoint (end of pretrain) stays, loadable
    last = load_checkpoint(run_dir / "last.pt")
    assert last["phase"]["index"] == 0

    restart = cfg.replace(
        name="restart",
        init_checkpoint=str(run_dir / "last.pt"),
        lr=1e-4,
        phases=[{"name": "finetune", "batches_per_epoch": 4}],
    )
    done = run(restart)
    metrics = json.loads((done / "metrics.json").read_text())
    assert metrics["dev"]["mean"] is not None and not (done / "failed.json").exists()
    assert_no_leftovers(done)
    assert (run_dir / "failed.json").is_file()  # the failed run stays marked
