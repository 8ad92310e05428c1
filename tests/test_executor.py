"""mtlib.runs.executor: one failure semantics for every engine, checked with an engine that trains nothing."""

from __future__ import annotations

import pytest

from mtlib.runs import executor
from mtlib.runs.events import Event
from mtlib.runs.executor import Run, RunsFailed, execute


class FakeEngine:
    """Trains a run by emitting its events; ``fail`` names runs that raise, ``interrupt`` one that is Ctrl-C'd."""

    def __init__(self, slots=1, fail=(), interrupt=None):
        self.slots, self.fail, self.interrupt = slots, set(fail), interrupt
        self.running, self.submitted, self.closed = [], [], False

    def free(self):
        return self.slots - len(self.running)

    def busy(self):
        return bool(self.running)

    def submit(self, run, emit):
        self.running.append(run)
        self.submitted.append(run.key)
        emit(Event("started", run.key, {"pid": 1}))

    def wait(self, emit):
        run = self.running.pop(0)
        if run.key == self.interrupt:
            raise KeyboardInterrupt
        emit(Event("evaluated", run.key, {"row": {"type": "eval", "phase": 1, "epoch": 1, "mean": 0.5}}))
        if run.key in self.fail:
            run.exception = ValueError("bad value")
            emit(Event("failed", run.key, {"error": "ValueError: bad value"}))
        else:
            emit(Event("finished", run.key, {"run_dir": f"/runs/{run.key}", "mean": 0.5}))

    def close(self):
        self.closed = True


@pytest.fixture
def runs(smoke_cfg, monkeypatch):
    monkeypatch.setattr(executor, "finished_dir", lambda cfg: None)
    monkeypatch.setattr(executor, "order", lambda ready, running, keys=None: list(ready))
    return lambda *specs: [Run(key, smoke_cfg, list(parents)) for key, *parents in specs]


def test_parents_first_and_every_event_in_order(runs):
    seen = []
    plan = runs(("a",), ("b", "a"), ("c", "b"))
    sweep = execute(plan, FakeEngine(slots=3), [lambda e: seen.append((e.kind, e.key))], show=False)
    assert [k for k, _ in seen] == ["started", "evaluated", "finished"] * 3
    assert [key for _, key in seen[::3]] == ["a", "b", "c"]  # a child only after its parent finished
    assert sweep.counts() == {"pending": 0, "running": 0, "done": 3, "failed": 0}
    assert sweep.runs["c"].run_dir == "/runs/c" and sweep.runs["c"].progress == "phase 1 epoch 1 dev 0.500"


def test_a_failure_fails_its_children_unstarted_and_the_others_go_on(runs):
    engine = FakeEngine(fail={"a"})
    plan = runs(("other",), ("a",), ("child", "a"), ("grandchild", "child"), ("orphan", "not planned"))
    sweep = execute(plan, engine, show=False)
    states = {k: (r.state, r.attempts, r.error) for k, r in sweep.runs.items()}
    assert states["a"] == ("failed", 1, "ValueError: bad value")
    assert states["child"] == ("failed", 0, "parent a failed")
    assert states["grandchild"] == ("failed", 0, "parent child failed")
    assert states["other"][0] == "done" and engine.submitted == ["other", "a"]
    assert states["orphan"] == ("failed", 0, "a parent is not part of the sweep")
    assert engine.closed
    with pytest.raises(RunsFailed, match="a: ValueError: bad value; child: parent a failed") as info:
        sweep.raise_failures()
    assert isinstance(info.value.__cause__, ValueError)  # the in-process exception, chained


def test_a_finished_run_is_found_not_trained(runs, monkeypatch):
    monkeypatch.setattr(executor, "finished_dir", lambda cfg: "/runs/done")
    monkeypatch.setattr(executor, "_mean", lambda run_dir: 0.7)
    engine = FakeEngine()
    seen = []
    sweep = execute(runs(("a",), ("b", "a")), engine, [lambda e: seen.append(e.kind)], show=False)
    assert seen == ["found", "found"] and engine.submitted == []
    assert all(r.found and r.dev_mean == 0.7 and r.state == "done" for r in sweep.runs.values())


def test_an_interruption_closes_the_engine_and_is_raised(runs):
    engine = FakeEngine(slots=1, interrupt="b")
    plan = runs(("a",), ("b",), ("c",))
    with pytest.raises(KeyboardInterrupt):
        execute(plan, engine, show=False)
    assert engine.closed and plan[2].state == "pending"
    line = executor.interrupted_at(plan)
    assert "3 run(s), 1 done, 1 running (b), 1 not started" in line and "resume from their last.pt" in line


def test_events_name_what_happened(smoke_cfg):
    from mtlib.runs.events import row_event

    assert row_event("k", {"type": "eval", "mean": 0.1}).kind == "evaluated"
    assert row_event("k", {"type": "train"}).kind == "trained" and row_event("k", {"type": "nope"}) is None
    with pytest.raises(ValueError, match="event kind 'done'"):
        Event("done", "k")
    event = Event("finished", "a seed1", {"run_dir": "/x", "mean": 0.5})
    assert Event.from_json(event.to_json()) == event
