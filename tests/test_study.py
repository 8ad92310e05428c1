"""The study command and the packed engine: planning, shards, packs formed through the executor, resume."""

from __future__ import annotations

import pytest
import torch

from mtlib.cli import main
from mtlib.experiments.claims_file import load_claims
from mtlib.experiments.resolve import resolve_config
from mtlib.runs.executor import execute
from mtlib.runs.pack.engine import PackedEngine, pack_key, unpackable
from mtlib.runs.pack.sizing import pack_size
from mtlib.runs.plan import plan
from mtlib.runs.study import claim_rows, parse_shard, study_seeds


def test_the_study_covers_every_row_a_claim_compares():
    rows = claim_rows()
    for claim in load_claims():
        assert claim.left in rows and claim.right in rows
    assert len(rows) == len(set(rows))


def test_shards_split_the_rows_without_overlap():
    rows = claim_rows()
    parts = [rows[i - 1 :: 3] for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(rows)
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) == (1, 1)
    for bad in ("0/3", "4/3", "x", "1-3"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_the_gpu_profile_fixes_ten_seeds_and_keyed_dropout():
    assert len(study_seeds("gpu", None)) == 10 and study_seeds("gpu", 3) == study_seeds("gpu", None)[:3]
    with pytest.raises(ValueError, match="fixes 10 seeds"):
        study_seeds("gpu", 11)
    assert resolve_config("gpu", row="pcgrad").dropout_rng == "keyed"


def test_what_cannot_be_packed_says_why():
    assert unpackable(resolve_config("gpu", row="pcgrad")) is None
    assert "dropout_rng" in unpackable(resolve_config("quick", row="pcgrad"))
    assert "SMART" in unpackable(resolve_config("gpu", row="gradvac_smart"))
    assert "recurrent" in unpackable(resolve_config("gpu", row="rnn128"))
    a, b = resolve_config("gpu", row="pcgrad", seed=1), resolve_config("gpu", row="pcgrad", seed=2)
    assert pack_key(a) == pack_key(b) != pack_key(resolve_config("gpu", row="gradvac", seed=1))


def test_a_pack_is_sized_from_free_memory_and_says_so():
    size, line = pack_size(resolve_config("gpu", row="pcgrad", device="cpu"))
    assert size >= 1 and "GiB per run" in line and "available host memory" in line
    assert pack_size(resolve_config("gpu", row="pcgrad"), 4) == (4, "4 runs per pack (--pack)")


def test_the_packed_engine_trains_packs_through_the_executor_and_finds_them_again(smoke_cfg, capsys):
    settings = dict(out_dir=smoke_cfg.out_dir, data_dir=smoke_cfg.data_dir, max_train_examples=32, progress=False)
    runs = plan("smoke", ["pcgrad", "base_pal_h1"], [1, 2], dropout_rng="keyed", **settings)
    sweep = execute(runs, PackedEngine(2), show=False)
    assert sweep.counts()["done"] == 4 and not sweep.failed
    again = execute(plan("smoke", ["pcgrad", "base_pal_h1"], [1, 2], dropout_rng="keyed", **settings), PackedEngine(2))
    assert all(r.found for r in again.runs.values())


def test_the_study_command_trains_and_resumes(smoke_cfg, tmp_path, capsys):
    args = ["study", "--profile", "smoke", "--rows", "pcgrad", "sum_all", "--shard", "2/2", "--out", str(tmp_path)]
    args += ["--set", f"data_dir={smoke_cfg.data_dir}", "--set", "dropout_rng=keyed", "--set", "max_train_examples=32"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "shard 2/2: 1 rows x 1 seeds" in err and "[study] 1 trained, 0 found, 0 failed" in err
    assert [p.name.split("-")[0] for p in tmp_path.iterdir()] == ["sum_all"]
    assert main(args) == 0
    assert "[study] 0 trained, 1 found" in capsys.readouterr().err


def test_a_group_that_runs_out_of_memory_is_computed_in_parts(capsys):
    from mtlib.runs.pack.compute import Compute

    seen = []

    def compute(template, task, members, requests, precision):
        seen.append(list(members))
        if len(members) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return {m: f"result {m}" for m in members}

    c = Compute()
    out = c._fitting(compute, {m: None for m in range(5)}, "sst", [0, 1, 2, 3, 4], {}, "fp32")
    assert out == {m: f"result {m}" for m in range(5)}
    assert seen[0] == [0, 1, 2, 3, 4] and all(len(s) <= 2 for s in seen[1:])
    assert c._parts([0, 1, 2, 3, 4]) == [[0, 1], [2, 3], [4]]  # later groups start at the size that fitted
    assert "2 at a time" in capsys.readouterr().out
