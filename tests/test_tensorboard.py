"""TensorBoard event files, read back with TensorBoard's own reader: written live (``tensorboard: true``) and
converted from history.jsonl (``python -m mtlib tensorboard``) they hold the same scalars as the history."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtlib.cli import main
from mtlib.rundir import RunDirectory, read_history
from mtlib.train.confusion import run_confusion
from mtlib.train.tensorboard_events import EVENT_FILES, convert_runs, row_scalars
from mtlib.train.trainer import run


def read_events(run_dir) -> tuple[dict[str, list[tuple[int, float]]], list[str]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    return scalars, sorted(acc.Tags()["images"])


def history_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """What the event file should hold, straight from history.jsonl."""
    out: dict[str, list[tuple[int, float]]] = {}
    step = 0
    for row in read_history(run_dir):
        step = row.get("examples_seen", step)
        for tag, value in row_scalars(row).items():
            out.setdefault(tag, []).append((step, value))
    return out


def assert_same(events, expected) -> None:
    assert set(events) == set(expected)
    for tag, points in expected.items():
        assert [s for s, _ in events[tag]] == [s for s, _ in points], tag
        np.testing.assert_allclose([v for _, v in events[tag]], [v for _, v in points], rtol=1e-6, err_msg=tag)


@pytest.fixture
def gradvac_cfg(smoke_cfg):
    return smoke_cfg.replace(gradient_method="gradvac", epochs=2, batches_per_epoch=9, log_every=2, lr=1e-3)


def test_a_live_run_writes_every_history_scalar_and_the_confusion_images(gradvac_cfg):
    run_dir = run(gradvac_cfg.replace(tensorboard=True))
    assert len(list(run_dir.glob(EVENT_FILES))) == 1
    events, images = read_events(run_dir)
    history = read_history(run_dir)
    evals = [r for r in history if r["type"] == "eval"]
    assert {
        "train_loss/sst",
        "train_loss/para",
        "train_loss/sts",
        "train/lr",
        "dev/sst",
        "dev/para",
        "dev/sts",
        "dev/mean",
        "gradients/cosine_sst_para",
        "gradients/cosine_para_sts",
        "gradients/conflict_share",
        "gradients/norm_sst",
        "final_dev/mean",
    } <= set(events)
    assert [s for s, _ in events["dev/mean"]] == [r["examples_seen"] for r in evals]
    np.testing.assert_allclose([v for _, v in events["dev/mean"]], [r["mean"] for r in evals], rtol=1e-6)
    assert (
        len(events["gradients/conflict_share"]) == len([r for r in history if r["type"] == "grad"]) == 2 * 3
    )  # 3 tasks a step
    assert_same(events, history_scalars(run_dir))
    assert images == ["confusion/para", "confusion/sst"]
    dev = json.loads((run_dir / "metrics.json").read_text())["dev_full"]  # every predicted row
    sst = run_confusion(run_dir, "sst", gradvac_cfg.data_dir)
    assert sst.shape == (5, 5) and sst.sum() == 48  # the smoke profile's final rows: 24 of each dev half
    assert np.trace(sst) / sst.sum() == pytest.approx(dev["sst"])  # the matrix agrees with the run's accuracy


def test_converting_history_gives_the_events_a_live_run_wrote(gradvac_cfg, capsys):
    live_dir = run(gradvac_cfg.replace(tensorboard=True))
    live, live_images = read_events(live_dir)
    for f in live_dir.glob(EVENT_FILES):
        f.unlink()
    assert main(["tensorboard", str(live_dir.parent.parent)]) == 0  # a folder holding runs
    assert f"{live_dir}: {len(read_history(live_dir))} history rows -> event file" in capsys.readouterr().out
    converted, images = read_events(live_dir)
    assert_same(converted, {tag: points for tag, points in live.items()})
    assert images == live_images
    assert main(["tensorboard", str(live_dir)]) == 0  # again: the file is replaced, not added to
    assert len(list(live_dir.glob(EVENT_FILES))) == 1
    with RunDirectory(live_dir).lock():  # a run another process is training writes its own events
        assert convert_runs([live_dir])[0][1].startswith(f"skipped: {live_dir} is in use by pid")


def test_the_switch_is_not_part_of_the_run_identity(smoke_cfg):
    assert smoke_cfg.replace(tensorboard=True).settings_hash() == smoke_cfg.settings_hash()


class Interrupt(Exception):
    pass


def test_a_resumed_run_leaves_one_event_file_matching_its_history(smoke_cfg):
    cfg = smoke_cfg.replace(tensorboard=True, sampler="pal", epochs=2, batches_per_epoch=3, log_every=1)

    def stop_after_first_epoch(row):
        if row["type"] == "eval":
            raise Interrupt

    with pytest.raises(Interrupt):
        run(cfg, callback=stop_after_first_epoch)
    run_dir = run(cfg)  # resumes from last.pt
    assert len(list(run_dir.glob(EVENT_FILES))) == 1
    events, _ = read_events(run_dir)
    assert "sampler/p_sst" in events
    assert [v for _, v in events["sampler/epoch_batches_sts"]] == [
        r["task_counts"]["sts"] for r in read_history(run_dir) if r["type"] == "eval"
    ]
    assert_same(events, history_scalars(run_dir))


def test_a_folder_without_runs_is_one_clear_error(tmp_path, capsys):
    assert main(["tensorboard", str(tmp_path)]) == 2
    assert "no history.jsonl here or below" in capsys.readouterr().err
