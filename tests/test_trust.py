"""Trust (issue 19): no cached or saved state is used unless its content is what was written, no run id outlives
a change in its inputs' content, caches never impersonate their source, predict never modifies a run, and an
unwritable cache never stops a run. Each test failed on the code before this issue's changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtlib.cli import main
from mtlib.data.augment import augment_examples
from mtlib.data.parse import Example
from mtlib.rundir import CheckpointError, RunDirectory, RunLocked, load_checkpoint, save_checkpoint
from mtlib.experiments.resolve import resolve_config
from mtlib.train.identity import run_dir_for, run_identity
from mtlib.train.rescore import predict_run
from mtlib.train.trainer import run

PRETRAIN = {"name": "pretrain", "freeze": "encoder", "lr": 1e-3}


def two_phase(data_dir: Path, out: Path, name: str = "b", **finetune):
    return resolve_config(
        "smoke",
        out_dir=str(out / "runs"),
        data_dir=str(data_dir),
        max_train_examples=32,
        progress=True,
        threads=1,
        name=name,
        phases=[PRETRAIN, {"name": "finetune", "batches_per_epoch": 3, **finetune}],
    )


def shared(run_dir: Path):
    return json.loads((run_dir / "metrics.json").read_text())["shared_phases"]


def flip(path: Path, count: int = 64) -> None:
    """Invert ``count`` bytes in the middle of a file (inside a tensor record for checkpoints: the zip's
    structure stays intact, so only a content check can notice)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
    path.write_bytes(bytes(data))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ----------------------------------------------------------------------------- shared phase states
def test_a_deleted_run_trained_again_does_not_adopt_its_own_old_phase(small_data_dir, tmp_path, capsys):
    first = run(two_phase(small_data_dir, tmp_path))
    (state,) = (tmp_path / "cache" / "phases").glob("*.pt")
    shutil.rmtree(first.parent)  # "delete runs to train them again, after changing the code say"
    again = run(two_phase(small_data_dir, tmp_path))
    out = capsys.readouterr().out
    assert again == first and "trained once by" not in out and "came from this run itself" in out
    assert shared(again) is None
    # the stale state was replaced by this training's own hand-over, which another row may adopt
    assert load_checkpoint(state)["instance"] == RunDirectory(again).instance()
    other = run(two_phase(small_data_dir, tmp_path, name="c", lr=3e-4))
    assert shared(other)["from"] == f"runs/{again.parent.name}/{again.name}"


def test_a_state_of_a_run_trained_again_since_is_not_adopted(small_data_dir, tmp_path, capsys):
    first = run(two_phase(small_data_dir, tmp_path))
    (state,) = (tmp_path / "cache" / "phases").glob("*.pt")
    kept = state.read_bytes()
    shutil.rmtree(first.parent)
    run(two_phase(small_data_dir, tmp_path))
    state.write_bytes(kept)  # the first training's state, whole, beside a run that was trained again
    other = run(two_phase(small_data_dir, tmp_path, name="c", lr=3e-4))
    assert "was trained again since it stored this state" in capsys.readouterr().out
    assert shared(other) is None


def test_a_flipped_byte_in_a_phase_state_is_not_adopted(small_data_dir, tmp_path, capsys):
    run(two_phase(small_data_dir, tmp_path))
    (state,) = (tmp_path / "cache" / "phases").glob("*.pt")
    flip(state)
    other = run(two_phase(small_data_dir, tmp_path, name="c", lr=3e-4))
    out = capsys.readouterr().out
    assert f"not using a shared phase state: checkpoint {state} is damaged: its content does not match" in out
    assert shared(other) is None
    load_checkpoint(state)  # replaced by the run's own, whole hand-over


def test_an_unwritable_cache_is_skipped_and_the_run_finishes(small_data_dir, tmp_path, capsys):
    (tmp_path / "cache").write_text("not a folder")  # as a read-only parent or a full quota would refuse it
    run_dir = run(two_phase(small_data_dir, tmp_path))
    out = capsys.readouterr().out
    assert (run_dir / "metrics.json").is_file()
    assert "note: shared phase state not stored" in out and "the run goes on without it" in out


def test_temporary_files_of_killed_writers_are_removed(small_data_dir, tmp_path):
    phases = tmp_path / "cache" / "phases"
    phases.mkdir(parents=True)
    dead = phases / f".0123456789abcdef.pt.tmp{dead_pid()}@{__import__('socket').gethostname()}"
    legacy_dead = phases / f".fedcba9876543210.pt.tmp{dead_pid()}"  # the name before hosts were recorded
    live = phases / f".0123456789abcdef.pt.tmp{__import__('os').getpid()}@{__import__('socket').gethostname()}"
    for p in (dead, legacy_dead, live):
        p.write_bytes(b"x" * 100)
    run(two_phase(small_data_dir, tmp_path))  # its hand-over cleans the folder it writes to
    assert not dead.exists() and not legacy_dead.exists() and live.exists()


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture
def finished(smoke_cfg):
    return run(smoke_cfg.replace(epochs=2, batches_per_epoch=3))


def test_a_flipped_byte_in_a_checkpoint_is_refused_naming_it(finished):
    best = finished / "best.pt"
    flip(best)
    with pytest.raises(CheckpointError, match=rf"checkpoint {best} is damaged: its content does not match"):
        load_checkpoint(best)


def test_a_flipped_byte_in_last_pt_stops_the_resume_with_what_to_do(smoke_cfg, capsys):
    import os

    cfg = smoke_cfg.replace(epochs=2, batches_per_epoch=3)
    env = {**os.environ, "MTLIB_FAULT": "epoch_end:2"}
    code = (
        "import sys; from mtlib.experiments.resolve import resolve_config; from mtlib.train.trainer import run; "
        "run(resolve_config(sys.argv[1]))"
    )
    path = Path(cfg.out_dir) / "cfg.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg.to_yaml())
    killed = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True)
    assert killed.returncode == -9
    run_dir = run_dir_for(cfg)
    flip(run_dir / "last.pt")
    with pytest.raises(CheckpointError, match=r"last.pt is damaged: .* Delete .*last.pt to start this run over"):
        run(cfg)


def test_a_flipped_byte_in_an_init_checkpoint_is_refused(finished, smoke_cfg):
    parent = finished / "best.pt"
    init = finished.parent / "init.pt"
    shutil.copy(parent, init)
    flip(init)
    with pytest.raises(CheckpointError, match=rf"{init} is damaged.*Check the key 'init_checkpoint'"):
        run(smoke_cfg.replace(name="child", epochs=1, batches_per_epoch=2, init_checkpoint=str(init)))


def test_predict_refuses_a_damaged_best_pt(finished, capsys):
    flip(finished / "best.pt")
    assert main(["predict", str(finished)]) == 2
    assert "is damaged: its content does not match" in capsys.readouterr().err


def test_checkpoints_of_the_first_format_still_load_with_a_note(tmp_path, capsys):
    legacy = tmp_path / "legacy.pt"
    torch.save({"format": "mtlib-checkpoint-1", "model": {"w": torch.ones(2)}}, legacy)
    assert torch.equal(load_checkpoint(legacy)["model"]["w"], torch.ones(2))
    assert "written before checkpoints carried a digest" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="carries no digest"):
        load_checkpoint(legacy, legacy=False)  # caches rebuild rather than trust it


# ----------------------------------------------------------------------------- run identity
def test_replaced_folder_backbone_weights_give_a_new_run_id(smoke_cfg, tmp_path):
    from mtlib.model.backbones import load_backbone

    encoder, tokenizer = load_backbone("tiny-random", seed=1)
    folder = tmp_path / "my-backbone"
    encoder.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    cfg = smoke_cfg.replace(backbone=str(folder))
    before = run_dir_for(cfg)
    other, _ = load_backbone("tiny-random", seed=2)  # same shapes, other weights, same path
    other.save_pretrained(folder)
    assert run_dir_for(cfg) != before


def test_an_init_checkpoint_with_other_content_gives_a_new_run_id(finished, smoke_cfg):
    init = finished.parent / "init.pt"
    shutil.copy(finished / "best.pt", init)
    cfg = smoke_cfg.replace(name="child", init_checkpoint=str(init))
    before = run_dir_for(cfg)
    state = load_checkpoint(init)
    state["model"] = {k: v + 1 for k, v in state["model"].items()}
    save_checkpoint(init, state)
    assert run_dir_for(cfg) != before


def test_a_data_edit_keeping_size_and_mtime_gives_a_new_run_id_in_the_same_process(smoke_cfg, tmp_path):
    import os

    data = tmp_path / "data"
    shutil.copytree(smoke_cfg.data_dir, data)
    cfg = smoke_cfg.replace(data_dir=str(data))
    before = run_dir_for(cfg)
    dev = data / "sts-dev.csv"
    st = dev.stat()
    text = dev.read_bytes()
    i = text.rindex(b"5.0") if b"5.0" in text else text.rindex(b"0")
    dev.write_bytes(
        text[:i] + (b"4.0" if text[i : i + 3] == b"5.0" else b"1") + text[i + (3 if text[i : i + 3] == b"5.0" else 1) :]
    )
    os.utime(dev, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert dev.stat().st_size == st.st_size and dev.stat().st_mtime_ns == st.st_mtime_ns
    assert run_dir_for(cfg) != before


def test_eda_runs_carry_their_augmentation_inputs_in_the_identity(smoke_cfg):
    identity = run_identity(smoke_cfg.replace(augment=True))
    assert set(identity["inputs"]["eda"]) == {"nlpaug", "nltk_data"}
    assert "inputs" not in run_identity(smoke_cfg)  # runs without such inputs keep their ids


# ----------------------------------------------------------------------------- EDA cache
SST = [
    Example(id=f"s{i}", sentences=(f"the movie number {i} was a good and quiet film",), label=i % 5 if i < 15 else 3)
    for i in range(40)
]


@pytest.mark.parametrize("damage", ["half", "empty", "edited"])
def test_a_damaged_eda_cache_is_said_and_rebuilt(damage, tmp_path, capsys):
    want = augment_examples("sst", SST, seed=3, cache_dir=tmp_path)
    (cache,) = tmp_path.glob("eda-sst-*.jsonl")
    lines = cache.read_text().splitlines(keepends=True)
    cache.write_text(
        {"half": "".join(lines[: len(lines) // 2]), "empty": "", "edited": "".join(lines).replace("movie", "mouse", 1)}[
            damage
        ]
    )
    assert augment_examples("sst", SST, seed=3, cache_dir=tmp_path) == want
    assert f"EDA cache file {cache} is not usable" in capsys.readouterr().err
    assert augment_examples("sst", SST, seed=3, cache_dir=tmp_path) == want  # rewritten whole
    assert "not usable" not in capsys.readouterr().err


# ----------------------------------------------------------------------------- predict
def test_predict_never_writes_into_the_run_even_when_the_dev_file_changed(smoke_cfg, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(smoke_cfg.data_dir, data)
    finished = run(smoke_cfg.replace(data_dir=str(data), epochs=1, batches_per_epoch=2))
    before = {p.relative_to(finished): p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    dev = data / "ids-sst-dev.csv"
    lines = dev.read_text().splitlines(keepends=True)
    dev.write_text("".join(lines[: len(lines) // 2]))  # the dev file changed since the run
    result = predict_run(finished)
    assert any("ids-sst-dev.csv differs from the file this run read" in w for w in result["warnings"])
    assert result["files"] and all(finished not in Path(f).parents for f in result["files"])
    assert {p.relative_to(finished): p.read_bytes() for p in finished.rglob("*") if p.is_file()} == before


def test_predict_refuses_a_run_that_is_still_training(finished):
    with RunDirectory(finished).lock():  # as a trainer holds it
        with pytest.raises(RunLocked, match="is being trained by pid"):
            predict_run(finished)
    # and a trainer cannot start on a run being read
    with RunDirectory(finished).reading():
        with pytest.raises(RunLocked, match="in use by"):
            RunDirectory(finished).lock()


def test_predict_refuses_an_out_folder_inside_the_run(finished):
    with pytest.raises(ValueError, match="inside the run"):
        predict_run(finished, out_dir=finished / "predictions")


# ----------------------------------------------------------------------------- python -m mtlib cache
def test_cache_command_lists_verifies_and_prunes(small_data_dir, tmp_path, capsys):
    run(two_phase(small_data_dir, tmp_path))
    (state,) = (tmp_path / "cache" / "phases").glob("*.pt")
    dead = state.parent / f".{state.name}.tmp{dead_pid()}"
    dead.write_bytes(b"partial")
    assert main(["cache", "verify", "--outputs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"phases/{state.name}  ok" in out and "left by a write that was killed midway" in out
    flip(state)
    main(["cache", "prune", "--outputs", str(tmp_path)])
    out = capsys.readouterr().out
    assert "is damaged" in out and "-> removed" in out and "2 unusable" in out
    assert not state.exists() and not dead.exists()
    main(["cache", "list", "--outputs", str(tmp_path)])
    assert "no cache entries" in capsys.readouterr().out
