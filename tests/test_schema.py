"""mtlib.rundir.schema: every history row kind and metrics.json round-trip through their records, files written
before the records (no version key) still read, and a malformed row or file is refused in one line."""

from __future__ import annotations

import json

import pytest

from mtlib.rundir import SchemaError, read_history, read_metrics
from mtlib.rundir.schema import ROWS, SCHEMA, EvalRow, GradRow, Metrics, StartRow, parse_row

# One row of each kind as the trainer writes it (key order included); eval/final scores keyed by task name,
# one of them not a course task (tasks are data).
ROWS_WRITTEN = [
    {
        "wall": 0.07,
        "type": "start",
        "schema": SCHEMA,
        "run_id": "bb94a519a5",
        "config_hash": "e817edcce8",
        "device": "cpu",
        "precision": "fp32",
        "params": {"encoder": 2057536, "head_sst": 325, "pals": 0, "total": 2057861, "trainable": 2057861},
        "data": {"sst": {"train_raw": 240, "train_used": 32}, "quora_train": "subset head", "max_chars": 250},
    },
    {
        "wall": 0.09,
        "type": "train",
        "phase": 0,
        "epoch": 1,
        "step": 3,
        "examples_seen": 24,
        "lr": 0.001,
        "loss": {"sst": 1.57, "polarity": 0.76},
    },
    {
        "wall": 0.16,
        "type": "eval",
        "phase": 0,
        "phase_name": "pretrain",
        "epoch": 1,
        "examples_seen": 24,
        "sst": 0.17,
        "polarity": 0.46,
        "sts": None,
        "mean": 0.31,
        "task_counts": {"sst": 2, "polarity": 1, "sts": 0},
        "improved": True,
        "probabilities": {"sst": 0.25, "polarity": 0.5, "sts": 0.25},
    },
    {
        "wall": 0.17,
        "type": "eval",
        "phase": 1,
        "phase_name": "finetune",
        "epoch": 1,
        "examples_seen": 48,
        "sst": 0.2,
        "mean": 0.2,
        "task_counts": {"sst": 3},
        "improved": False,
    },  # no probabilities: not a PAL sampler
    {
        "wall": 0.27,
        "type": "grad",
        "epoch": 1,
        "examples_seen": 72,
        "cosine": [[1.0, -0.1], [-0.1, 1.0]],
        "pairs": {"sst|polarity": -0.1},
        "conflict_share": 1.0,
        "norms": {"sst": 0.5, "polarity": 2.0},
        "loss_weights": {"sst": 1.2, "polarity": 0.8},
        "counts": {"sst": 2, "polarity": 1},
        "beta": 0.6,
    },
    {
        "wall": 0.28,
        "type": "grad",
        "epoch": 1,
        "examples_seen": 80,
        "cosine": [[1.0, 0.2], [0.2, 1.0]],
        "pairs": {"sst|polarity": 0.2},
        "conflict_share": 0.0,
        "norms": {"sst": 0.5, "polarity": 2.0},
        "counts": {"sst": 1, "polarity": 1},
    },
    {"wall": 0.5, "type": "final", "sst": 0.2, "polarity": 0.4, "mean": 0.3},
]

METRICS = {
    "schema": SCHEMA,
    "name": "pal",
    "seed": 11711,
    "run_id": "1603aa3fac",
    "config_hash": "73d72b91a8",
    "backbone": "tiny-random",
    "dev": {"sst": 0.17, "polarity": 0.46, "mean": 0.31},
    "dev_split": "subsample",
    "best_epoch": 2,
    "best_dev_subsample_mean": None,
    "examples_seen": 96,
    "train_seconds": 1.4,
    "final_eval_seconds": 0.0,
    "device": "cpu",
    "precision": "fp32",
    "data": {"sst": {"train_used": 32}},
    "data_sha256": {"sst": "ab12"},
    "params": {"encoder": 10, "total": 12},
    "resumed": [{"phase": 1, "epoch": 1}],
    "shared_phases": None,
    "code": {"version": "0.1", "commit": None},
    "speed": {"train": {"updates": 12}},
    "precision_reason": "precision: fp32 set in the config",
}


def write(run_dir, rows) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_every_row_kind_round_trips_byte_for_byte():
    assert {r["type"] for r in ROWS_WRITTEN} == set(ROWS)
    for row in ROWS_WRITTEN:
        record = parse_row(row, SCHEMA, "h")
        assert type(record) is ROWS[row["type"]]
        assert json.dumps(record.to_json()) == json.dumps(row)  # same keys, same order
    eval_row = parse_row(ROWS_WRITTEN[2])
    assert eval_row.scores == {"sst": 0.17, "polarity": 0.46, "sts": None, "mean": 0.31}  # the undeclared keys
    assert eval_row.task_counts["polarity"] == 1 and eval_row.probabilities["polarity"] == 0.5


def test_records_built_by_a_writer_give_the_written_row():
    row = EvalRow(
        phase=0,
        phase_name="pretrain",
        epoch=1,
        examples_seen=24,
        scores={"sst": 0.17, "polarity": 0.46, "sts": None, "mean": 0.31},
        task_counts={"sst": 2, "polarity": 1, "sts": 0},
        improved=True,
        probabilities={"sst": 0.25, "polarity": 0.5, "sts": 0.25},
    )
    row.wall = 0.16
    assert json.dumps(row.to_json()) == json.dumps(ROWS_WRITTEN[2])
    grad = GradRow(
        epoch=1,
        examples_seen=80,
        cosine=[[1.0, 0.2], [0.2, 1.0]],
        pairs={"sst|polarity": 0.2},
        conflict_share=0.0,
        norms={"sst": 0.5, "polarity": 2.0},
        counts={"sst": 1, "polarity": 1},
        wall=0.28,
    )
    assert json.dumps(grad.to_json()) == json.dumps(ROWS_WRITTEN[5])  # loss_weights, beta: left out when None
    assert StartRow(run_id="r", config_hash="c", device="cpu", precision="fp32", params={}, data={}).schema == SCHEMA
    with pytest.raises(TypeError):
        GradRow(epoch=1, examples_seen=1)  # a writer cannot leave out a field every row has


def test_metrics_round_trip_and_read(tmp_path):
    record = Metrics.from_json(METRICS)
    assert json.dumps(record.to_json()) == json.dumps(METRICS)
    assert list(record.to_json())[0] == "schema"
    (tmp_path / "metrics.json").write_text(json.dumps({**METRICS, "notes": "kept"}))
    assert read_metrics(tmp_path)["notes"] == "kept"  # a key no field declares stays
    assert Metrics.from_json({**METRICS, "notes": "kept"}).extra == {"notes": "kept"}


def test_a_history_file_reads_whole_with_its_version(tmp_path):
    write(tmp_path, ROWS_WRITTEN)
    assert read_history(tmp_path) == ROWS_WRITTEN
    assert [r["epoch"] for r in read_history(tmp_path, kind="eval")] == [1, 1]
    with open(tmp_path / "history.jsonl", "a") as f:
        f.write('{"wall": 0.6, "type": "tr')  # a kill mid-write: the torn last line is left out
    assert read_history(tmp_path) == ROWS_WRITTEN


def test_files_without_a_version_are_version_1(tmp_path):
    # as the trainer wrote them before the records: no version key; a missing field is None, not an error
    old = [{k: v for k, v in r.items() if k != "schema"} for r in ROWS_WRITTEN]
    write(tmp_path, old)
    assert read_history(tmp_path) == old
    assert parse_row(old[0], 1).schema == 1 and json.dumps(parse_row(old[0], 1).to_json()) == json.dumps(old[0])
    write(tmp_path / "hand", [{"type": "eval", "examples_seen": 100, "mean": 0.5}])  # a hand-made file
    assert read_history(tmp_path / "hand")[0]["mean"] == 0.5
    assert parse_row({"type": "eval", "examples_seen": 100, "mean": 0.5}, 1).epoch is None
    old_metrics = {k: v for k, v in METRICS.items() if k != "schema"}
    (tmp_path / "metrics.json").write_text(json.dumps(old_metrics))
    assert read_metrics(tmp_path) == old_metrics
    (tmp_path / "metrics.json").write_text(json.dumps({"name": "a", "seed": 1, "dev": {"sst": 0.5}}))
    assert read_metrics(tmp_path)["dev"] == {"sst": 0.5}


@pytest.mark.parametrize(
    "line,bad,message",
    [
        (1, {"type": "eval", "phase": 0, "epoch": "1"}, "'eval' row: field 'epoch' should be an integer, got '1'"),
        (
            2,
            {"type": "eval", "epoch": 1, "polarity": "high"},
            "'eval' row: field 'polarity' should be a number or null",
        ),
        (
            2,
            {"type": "train", "epoch": 1, "loss": {"sst": "x"}},
            "'train' row: field 'loss' should be an object of numbers",
        ),
        (2, {"type": "grad", "counts": {"sst": 1.5}}, "'grad' row: field 'counts' should be an object of integers"),
        (
            2,
            {"type": "resume", "epoch": 1},
            "field 'type' should be one of start, train, eval, grad, final, got 'resume'",
        ),
        (2, {"epoch": 1}, "field 'type' should be one of start, train, eval, grad, final, got None"),
        (2, [1, 2], "expected a JSON object (history row), got [1, 2]"),
        (2, {"type": "final", "sst": True}, "'final' row: field 'sst' should be a number or null, got True"),
    ],
)
def test_a_malformed_row_is_one_line_naming_file_line_and_field(tmp_path, line, bad, message):
    rows = [bad] if line == 1 else [ROWS_WRITTEN[0], bad, ROWS_WRITTEN[-1]]
    write(tmp_path, rows)
    with pytest.raises(SchemaError) as err:
        read_history(tmp_path)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"{tmp_path / 'history.jsonl'} line {line}: {message}"), text
    assert isinstance(err.value, ValueError)  # the CLI prints it as one error line


def test_version_2_rows_must_have_every_field(tmp_path):
    row = {k: v for k, v in ROWS_WRITTEN[1].items() if k != "lr"}
    write(tmp_path, [ROWS_WRITTEN[0], row])
    with pytest.raises(SchemaError, match=r"history.jsonl line 2: 'train' row: field 'lr' is missing$"):
        read_history(tmp_path)
    write(tmp_path, [{k: v for k, v in ROWS_WRITTEN[0].items() if k != "schema"}, row])
    assert read_history(tmp_path)[1] == row  # the same row in a version-1 file
    (tmp_path / "metrics.json").write_text(json.dumps({k: v for k, v in METRICS.items() if k != "dev"}))
    with pytest.raises(SchemaError, match=r"metrics.json: metrics: field 'dev' is missing$"):
        read_metrics(tmp_path)


def test_other_malformed_files(tmp_path):
    write(tmp_path, [ROWS_WRITTEN[0]])
    with open(tmp_path / "history.jsonl", "a") as f:
        f.write("{not json\n" + json.dumps(ROWS_WRITTEN[-1]) + "\n")
    with pytest.raises(SchemaError, match=r"history.jsonl line 2: not valid JSON"):
        read_history(tmp_path)  # only a torn *last* line is a kill mid-write
    write(tmp_path, [{**ROWS_WRITTEN[0], "schema": SCHEMA + 1}])
    with pytest.raises(SchemaError, match=rf"line 1: schema {SCHEMA + 1} is not one this mtlib reads"):
        read_history(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({**METRICS, "best_epoch": 1.5}))
    with pytest.raises(SchemaError, match=r"metrics.json: metrics: field 'best_epoch' should be an integer, got 1.5"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.json").write_text("[1]")
    with pytest.raises(SchemaError, match=r"metrics.json: expected a JSON object \(metrics\)"):
        read_metrics(tmp_path)


def test_a_trained_run_writes_records_that_read_back(smoke_cfg):
    from mtlib.train.trainer import run

    run_dir = run(smoke_cfg.replace(gradient_method="pcgrad", epochs=1, batches_per_epoch=6))
    rows = read_history(run_dir)
    assert rows[0]["type"] == "start" and rows[0]["schema"] == SCHEMA
    for row in rows:
        assert json.dumps(parse_row(row).to_json()) == json.dumps(row)
    assert {r["type"] for r in rows} == {"start", "train", "eval", "grad", "final"}
    metrics = read_metrics(run_dir)
    assert metrics["schema"] == SCHEMA and json.dumps(Metrics.from_json(metrics).to_json()) == json.dumps(metrics)
