"""Packed runs (``mtlib.runs.pack``): K runs of one configuration trained as one batched model equal the same
runs trained alone, with keyed dropout on or off; a run that fails in a pack fails alone; a killed pack resumes
to the same runs.

Every run here is the smoke profile (tiny-random encoder, 32 training examples per task) with
``dropout_rng: keyed``, packs of two seeds. Solo and packed runs of one config have the same run id, so they
are written to different out_dirs, and those out_dirs have different parents: a run's shared-phase cache lives
at ``<out_dir>/../cache`` (``mtlib.train.shared_phases``), and a packed run that adopted the solo run's
pretraining phase from there would not be compared on that phase at all.

Tolerances. A packed run is not bit for bit its solo run: its forward/backward is one ``vmap`` over the
stacked parameters with padding to the pack's longest batch, so float sums are ordered differently. Measured
on the smoke rows: training losses and gradient diagnostics differ by <= 2.2e-6, dev predictions by <= 5e-8,
sst/para predictions (class labels) not at all. The STS Pearson r, though, differs by up to 3e-5: smoke's tiny
random model gives nearly constant STS outputs (std ~1.6e-4 over a dev subsample), so a 3e-8 change in an
output moves r by ~1e-4 of its output spread. Hence predictions <= 1e-6, losses and every other float of the
history <= 1e-5, sst/para accuracies exactly, and the STS r (and the means that include it) <= 1e-3. The
trained weights (best.pt) differ by <= 3e-8 and are held to 1e-6: the check that is both tight and well
conditioned.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mtlib.config.run_config import RunConfig
from mtlib.data.metrics import read_predictions
from mtlib.experiments.resolve import resolve_config
from mtlib.model import backbones
from mtlib.model.keyed_dropout import keyed_dropout, keyed_uniform
from mtlib.rundir import load_checkpoint
from mtlib.runs.pack import pack as pack_module
from mtlib.runs.pack.threads import train_pack
from mtlib.train.identity import run_dir_for
from mtlib.train.steps import NumericFault
from mtlib.train.trainer import run

SEEDS = (1, 2)
PRED_TOL = 1e-6  # dev predictions
PARAM_TOL = 1e-6  # best.pt tensors: measured <= 3e-8 on these rows
HIST_TOL = 1e-5  # losses, gradient diagnostics, sampler probabilities
# The STS Pearson r of smoke's nearly constant STS outputs amplifies ~3e-8 output differences to ~3e-5
# (module docstring); the STS r, and the means that include it, get this looser tolerance.
STS_R_TOL = 1e-3
SCORE_KEYS = ("sst", "para", "sts", "mean")  # an eval/final history row's scores (top-level keys)
TIMING = {"train_seconds", "final_eval_seconds", "speed", "resumed"}  # metrics.json fields that may differ


def make_cfg(data_dir: Path, out_dir: Path, row: str, seed: int, **changes) -> RunConfig:
    return resolve_config(
        "smoke",
        row=row,
        out_dir=str(out_dir),
        data_dir=str(data_dir),
        max_train_examples=32,
        progress=False,
        threads=1,
        seed=seed,
        dropout_rng="keyed",
        **changes,
    )


# ---------------------------------------------------------------------------------------------- comparing
def _close(a, b, tol: float, where: str) -> None:
    """``a`` and ``b`` (JSON values) equal, floats within ``tol`` (relative to magnitudes above 1)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), f"{where}: {a!r} vs {b!r}"
        assert math.isclose(a, b, rel_tol=tol, abs_tol=tol), f"{where}: {a!r} vs {b!r} (tolerance {tol})"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            _close(a[k], b[k], tol, f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, tol, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def _scores_close(a: dict, b: dict, where: str) -> None:
    """sst/para accuracies exactly (their predictions are class labels and equal); the STS r and the mean
    within STS_R_TOL (the STS r's conditioning, module docstring)."""
    assert a.keys() == b.keys(), where
    for k in a:
        _close(a[k], b[k], 0.0 if k in ("sst", "para") else STS_R_TOL, f"{where}.{k}")


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line.strip()]


def assert_history_close(got: Path, want: Path) -> None:
    a, b = history(got), history(want)
    assert [r["type"] for r in a] == [r["type"] for r in b]
    for i, (x, y) in enumerate(zip(a, b)):
        where = f"history row {i} ({x['type']})"
        x = {k: v for k, v in x.items() if k != "wall"}
        y = {k: v for k, v in y.items() if k != "wall"}
        if x["type"] in ("eval", "final"):
            _scores_close(
                {k: x.pop(k) for k in SCORE_KEYS if k in x}, {k: y.pop(k) for k in SCORE_KEYS if k in y}, where
            )
        _close(x, y, HIST_TOL, where)


def assert_metrics_close(got: Path, want: Path) -> None:
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (got, want))
    a, b = ({k: v for k, v in m.items() if k not in TIMING} for m in (a, b))
    for key in ("dev", "dev_full"):
        if a.get(key) is not None or b.get(key) is not None:
            _scores_close(a.pop(key), b.pop(key), f"metrics.json {key}")
    # the best dev-subsample mean includes an STS r
    _close(a.pop("best_dev_subsample_mean"), b.pop("best_dev_subsample_mean"), STS_R_TOL, "best_dev_subsample_mean")
    _close(a, b, 0.0, "metrics.json")


def assert_predictions_close(got: Path, want: Path) -> None:
    names = sorted(p.name for p in (want / "predictions").glob("*.csv"))
    assert names and sorted(p.name for p in (got / "predictions").glob("*.csv")) == names
    for name in names:
        task = name.split("-")[0]
        a, b = (read_predictions(d / "predictions" / name, task) for d in (got, want))
        assert a.keys() == b.keys(), name
        worst = max(abs(a[i] - b[i]) for i in b)
        assert worst <= PRED_TOL, f"{name}: predictions differ by up to {worst}"


def assert_weights_close(got: Path, want: Path) -> None:
    """best.pt: the most sensitive of these checks (no conditioning to amplify noise, and a wrong update of
    one parameter shows here even where the dev scores hardly move)."""
    a, b = (load_checkpoint(d / "best.pt")["model"] for d in (got, want))
    assert a.keys() == b.keys()
    worst = {k: float((a[k].double() - b[k].double()).abs().max()) for k in b if b[k].is_floating_point()}
    bad = {k: v for k, v in sorted(worst.items(), key=lambda kv: -kv[1]) if v > PARAM_TOL}
    assert not bad, f"best.pt tensors differ by more than {PARAM_TOL}: {dict(list(bad.items())[:5])}"
    assert all(torch.equal(a[k], b[k]) for k in b if not b[k].is_floating_point())


def assert_same_run(got: Path, want: Path) -> None:
    """``got`` (packed) is ``want`` (solo): the same run folder (run id) under its out_dir, history, metrics,
    predictions and best.pt within the tolerances."""
    assert got.parts[-2:] == want.parts[-2:]  # <out_dir>/<name>-<run id>/seed<k>
    assert (got / "metrics.json").is_file(), f"{got} did not finish"
    assert not (got / "failed.json").exists()
    assert_weights_close(got, want)  # first: its message names the parameter that went wrong
    assert_history_close(got, want)
    assert_metrics_close(got, want)
    assert_predictions_close(got, want)


def train_packed(cfgs: list[RunConfig]) -> list[Path]:
    outcomes = train_pack(cfgs)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def solo(small_data_dir, tmp_path_factory):
    """``solo(row, seed)``: that run trained alone (once per module). Each row has its own out_dir, so that no
    solo run adopts another row's pretraining phase from a shared cache (pcgrad's and gradvac's are the same)
    while its packed run trains it."""
    root = tmp_path_factory.mktemp("solo")
    done: dict[tuple, Path] = {}

    def get(row: str, seed: int) -> Path:
        if (row, seed) not in done:
            done[row, seed] = run(make_cfg(small_data_dir, root / row / "runs", row, seed))
        return done[row, seed]

    return get


# ---------------------------------------------------------------------------------------------- 1. rows
ROWS = [
    "base_pal_h1",  # single-task steps, PAL sampler, one phase
    "pcgrad",  # pretrain phase, then PCGrad on one batch per task
    "gradvac",
    "compromise",  # pal_control groups, losses / n_t^beta, GradVac
    "advanced_pal",  # PALs from the first phase on, EDA augmentation, two phases
]


@pytest.mark.parametrize("row", ROWS)
def test_packed_runs_equal_solo_runs(row, small_data_dir, solo, tmp_path):
    if row == "advanced_pal" and not (small_data_dir / "nltk_data").is_dir():
        pytest.skip("augment needs nltk_data beside the course files")
    want = [solo(row, s) for s in SEEDS]
    out = tmp_path / "pack" / "runs"
    got = train_packed([make_cfg(small_data_dir, out, row, s) for s in SEEDS])
    for g, w in zip(got, want):
        assert_same_run(g, w)
        # neither adopted a shared phase (separate caches): every phase was trained both ways, and compared
        assert json.loads((w / "metrics.json").read_text())["shared_phases"] is None


# ---------------------------------------------------------------------------------------------- 2. no dropout
def test_packed_equals_solo_without_dropout(small_data_dir, solo, tmp_path, monkeypatch):
    real = backbones.tiny_config

    def no_dropout(vocab_size):
        config = real(vocab_size)
        config.hidden_dropout_prob = 0.0
        config.attention_probs_dropout_prob = 0.0
        return config

    monkeypatch.setattr(backbones, "tiny_config", no_dropout)
    row = "pcgrad"
    solo_out, pack_out = tmp_path / "solo" / "runs", tmp_path / "pack" / "runs"
    want = [run(make_cfg(small_data_dir, solo_out, row, s, hidden_dropout=0.0)) for s in SEEDS]
    got = train_packed([make_cfg(small_data_dir, pack_out, row, s, hidden_dropout=0.0) for s in SEEDS])
    for g, w in zip(got, want):
        assert_same_run(g, w)

    # the runs of test 1 do draw dropout masks: without them the same run trains differently
    monkeypatch.undo()
    with_dropout = [r["loss"] for r in history(solo(row, SEEDS[0])) if r["type"] == "train"]
    without = [r["loss"] for r in history(want[0]) if r["type"] == "train"]
    assert len(with_dropout) == len(without)
    assert max(abs(a[t] - b[t]) for a, b in zip(with_dropout, without) for t in a) > 1e-3


# ---------------------------------------------------------------------------------------------- 3. keyed dropout
def test_keyed_masks_do_not_depend_on_padding():
    key = torch.tensor(12345, dtype=torch.int64)
    short = keyed_uniform(key, 3, torch.Size([4, 7, 16]), "cpu")
    long = keyed_uniform(key, 3, torch.Size([4, 19, 16]), "cpu")
    assert torch.equal(short, long[:, :7])
    # dropout itself, on a padded input: the real tokens get the same mask and scale
    x = torch.randn(4, 7, 16)
    with keyed_dropout(key):
        y_short = F.dropout(x, 0.3, training=True)
    with keyed_dropout(key):
        y_long = F.dropout(F.pad(x, (0, 0, 0, 12)), 0.3, training=True)
    assert torch.equal(y_short, y_long[:, :7])
    assert (y_short == 0).any() and (y_short != 0).any()


def test_keyed_masks_differ_by_key_and_call():
    shape = torch.Size([8, 32, 16])
    a = keyed_uniform(torch.tensor(1), 1, shape, "cpu")
    assert torch.equal(a, keyed_uniform(torch.tensor(1), 1, shape, "cpu"))  # a function of its arguments
    for other in (keyed_uniform(torch.tensor(2), 1, shape, "cpu"), keyed_uniform(torch.tensor(1), 2, shape, "cpu")):
        assert ((a < 0.5) != (other < 0.5)).float().mean() > 0.4  # about half the p=0.5 masks differ
    # successive F.dropout calls in one context draw different masks
    with keyed_dropout(7):
        m1 = F.dropout(torch.ones(shape), 0.5, training=True) != 0
        m2 = F.dropout(torch.ones(shape), 0.5, training=True) != 0
    assert (m1 != m2).float().mean() > 0.4


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keyed_keep_rate(p):
    u = keyed_uniform(torch.tensor(99), 1, torch.Size([1000, 1000]), "cpu")
    assert u.min() >= 0 and u.max() < 1
    assert abs(float((u >= p).float().mean()) - (1 - p)) < 0.01
    with keyed_dropout(99):
        y = F.dropout(torch.ones(1000, 1000), p, training=True)
    assert abs(float((y != 0).float().mean()) - (1 - p)) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))  # kept elements scaled
    with keyed_dropout(99):  # eval mode and p=0 draw nothing
        x = torch.randn(10, 10)
        assert torch.equal(F.dropout(x, p, training=False), x)
        assert torch.equal(F.dropout(x, 0.0, training=True), x)


def test_keyed_dropout_under_vmap_equals_each_member():
    keys = torch.tensor([5, 17, -3], dtype=torch.int64)
    lengths = [9, 4, 6]  # members' own sequence lengths, padded to the longest in the batched call
    xs = [torch.randn(2, n, 8) for n in lengths]
    batched = torch.stack([F.pad(x, (0, 0, 0, max(lengths) - x.shape[1])) for x in xs])

    def two_dropouts(x, key):
        with keyed_dropout(key):
            return F.dropout(F.dropout(x, 0.2, training=True) * 2.0, 0.4, training=True)

    out = torch.func.vmap(two_dropouts, randomness="error")(batched, keys)
    for k, x in enumerate(xs):
        alone = two_dropouts(x, keys[k])
        assert torch.equal(out[k, :, : x.shape[1]], alone), f"member {k}"
        assert torch.equal(two_dropouts(batched[k], keys[k]), out[k])  # the unbatched call on the padded input


# ---------------------------------------------------------------------------------------------- 4. NaN
def test_a_nan_run_fails_alone(small_data_dir, solo, tmp_path, monkeypatch):
    row = "base_pal_h1"
    attach = pack_module.Member.attach

    def attach_corrupting_member_1(self, model):
        attach(self, model)
        if self.k == 1:  # the model is not stacked yet (that happens at the pack's first round)
            with torch.no_grad():
                model.encoder.encoder.layer[0].attention.self.query.weight.fill_(float("nan"))

    monkeypatch.setattr(pack_module.Member, "attach", attach_corrupting_member_1)
    out = tmp_path / "pack" / "runs"
    cfgs = [make_cfg(small_data_dir, out, row, s) for s in SEEDS]
    outcomes = train_pack(cfgs)
    assert isinstance(outcomes[1], NumericFault), outcomes[1]
    failed_dir = run_dir_for(cfgs[1])
    failed = json.loads((failed_dir / "failed.json").read_text())
    assert failed["kind"] == "NumericFault" and failed["where"]["phase"].startswith("0")
    assert not (failed_dir / "metrics.json").exists()
    assert isinstance(outcomes[0], Path), outcomes[0]
    assert_same_run(outcomes[0], solo(row, SEEDS[0]))


# ---------------------------------------------------------------------------------------------- 5. kill, resume
_KILLED_PACK = """
import sys
from mtlib.experiments.resolve import resolve_config
from mtlib.runs.pack.threads import train_pack
outcomes = train_pack([resolve_config(path) for path in sys.argv[1:]])
print("pack ended without the fault:", outcomes)
"""


def test_a_killed_pack_resumes_identically(small_data_dir, solo, tmp_path):
    row = "pcgrad"  # pretrain (1 epoch), then finetune (2 epochs)
    out = tmp_path / "pack" / "runs"
    cfgs = [make_cfg(small_data_dir, out, row, s) for s in SEEDS]
    paths = []
    for cfg in cfgs:
        path = tmp_path / f"seed{cfg.seed}.yaml"
        path.write_text(cfg.to_yaml(), encoding="utf-8")
        paths.append(str(path))
    # MTLIB_FAULT SIGKILLs the process: the first attempt runs in a child. Its count is per process, so
    # epoch_end:3 is the third epoch end of either member: member 0's first finetune epoch (the members take
    # turns, so member 1 has finished its pretraining by then and not yet written its finetune epoch)
    env = {**os.environ, "MTLIB_FAULT": "epoch_end:3", "OMP_NUM_THREADS": "1"}
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_PACK, *paths], env=env, capture_output=True, text=True, timeout=300
    )
    assert child.returncode == -9, (
        f"the pack was not killed (exit {child.returncode}):\n{child.stdout[-3000:]}{child.stderr[-3000:]}"
    )
    stopped = {}
    for cfg in cfgs:
        run_dir = run_dir_for(cfg)
        assert (run_dir / "last.pt").is_file() and not (run_dir / "metrics.json").exists(), run_dir
        phase = load_checkpoint(run_dir / "last.pt")["phase"]
        stopped[cfg.seed] = {"phase": phase["index"], "epoch": phase["progress"]["epoch"]}
    assert stopped[SEEDS[0]] != stopped[SEEDS[1]], stopped  # killed at different points of their runs

    got = train_packed(cfgs)  # the second attempt, in this process: resumes both runs
    for cfg, g in zip(cfgs, got):
        assert g == run_dir_for(cfg)
        assert_same_run(g, solo(row, cfg.seed))
        resumed = json.loads((g / "metrics.json").read_text())["resumed"]
        assert resumed == [stopped[cfg.seed]]
        assert not (g / "last.pt").exists() and not (g / ".lock").exists()
