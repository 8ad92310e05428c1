"""mtlib.methods.samplers: the PAL schedule (docs/original.md §3 worked example), task_ratios, TaskSampler."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mtlib.methods.samplers import (
    SAMPLERS,
    TaskSampler,
    pal_alpha,
    pal_control_probabilities,
    pal_probabilities,
    task_ratios,
)

TASKS = ["sst", "para", "sts"]
N = {"sst": 267, "para": 8845, "sts": 189}  # docs/original.md §3: micro-batch counts of the raw data


def test_pal_probabilities_spec_example():
    assert pal_probabilities(N, 1, 10) == pytest.approx([0.0287, 0.9510, 0.0203], abs=5e-5)
    assert pal_probabilities(N, 10, 10) == pytest.approx([0.2533, 0.5102, 0.2364], abs=5e-5)
    assert pal_probabilities(list(N.values()), 1, 10) == pytest.approx(pal_probabilities(N, 1, 10))
    for e in range(1, 11):
        p = pal_probabilities(N, e, 10)
        assert p.sum() == pytest.approx(1.0)
    # the mix evens out: the big task's share falls every epoch
    shares = [pal_probabilities(N, e, 10)[1] for e in range(1, 11)]
    assert all(a > b for a, b in zip(shares, shares[1:]))


def test_pal_alpha_sequence():
    alphas = [pal_alpha(e, 10) for e in range(1, 11)]
    assert alphas == pytest.approx([1, 0.911, 0.822, 0.733, 0.644, 0.556, 0.467, 0.378, 0.289, 0.2], abs=5e-4)
    assert pal_alpha(1, 1) == 0.2  # as the original: alpha 0.2 with a single epoch
    assert pal_probabilities(N, 1, 1) == pytest.approx([0.2533, 0.5102, 0.2364], abs=5e-5)
    with pytest.raises(ValueError, match="epoch"):
        pal_alpha(0, 10)
    with pytest.raises(ValueError, match="epoch"):
        pal_alpha(11, 10)
    with pytest.raises(ValueError, match="positive"):
        pal_probabilities([1, 0, 2], 1, 2)


def test_task_ratios_rows():
    rows = task_ratios(N, 10)
    assert len(rows) == 10
    assert [r["epoch"] for r in rows] == list(range(1, 11))
    assert rows[0]["alpha"] == 1.0 and rows[-1]["alpha"] == pytest.approx(0.2)
    assert (rows[0]["sst"], rows[0]["para"], rows[0]["sts"]) == pytest.approx((0.0287, 0.9510, 0.0203), abs=5e-5)
    assert all(sum(r[t] for t in TASKS) == pytest.approx(1.0) for r in rows)


def test_pal_control_probabilities():
    p = pal_probabilities(N, 1, 10)
    q = pal_control_probabilities(p, 16)
    assert q.sum() == pytest.approx(1.0)
    assert (q > 0).all()
    # (K p_t - 1)/(K - 3) clipped at 0.025 before renormalising
    raw = np.clip((16 * p - 1) / 13, 0.025, 1)
    assert q == pytest.approx(raw / raw.sum())


def test_round_robin_order():
    s = TaskSampler("round_robin", TASKS, N, 3)
    assert [s.next_task() for _ in range(7)] == ["sst", "para", "sts", "sst", "para", "sts", "sst"]
    assert s.probabilities() == pytest.approx({t: 1 / 3 for t in TASKS})


def test_random_is_roughly_uniform():
    s = TaskSampler("random", TASKS, N, 3, seed=1)
    counts = Counter(s.next_task() for _ in range(6000))
    assert all(abs(counts[t] / 6000 - 1 / 3) < 0.03 for t in TASKS)


@pytest.mark.parametrize("epoch", [1, 5, 10])
def test_pal_empirical_frequencies(epoch):
    s = TaskSampler("pal", TASKS, N, 10, seed=3)
    s.set_epoch(epoch)
    n = 20000
    counts = Counter(s.next_task() for _ in range(n))
    p = pal_probabilities(N, epoch, 10)
    for t, pt in zip(TASKS, p):
        assert counts[t] / n == pytest.approx(pt, abs=4 * np.sqrt(pt * (1 - pt) / n) + 1e-3)
    assert s.probabilities() == pytest.approx(dict(zip(TASKS, p)))


@pytest.mark.parametrize("epoch", [1, 10])
def test_pal_control_groups(epoch):
    k = 16
    s = TaskSampler("pal_control", TASKS, N, 10, seed=5, k=k)
    s.set_epoch(epoch)
    groups = [s.group() for _ in range(3000)]
    assert all(len(g) == k for g in groups)
    assert all(set(g) == set(TASKS) for g in groups)  # every task at least once
    q = pal_control_probabilities(pal_probabilities(N, epoch, 10), k)
    mean = {t: np.mean([g.count(t) for g in groups]) for t in TASKS}
    for t, qt in zip(TASKS, q):
        assert mean[t] == pytest.approx(1 + (k - 3) * qt, abs=0.15)
    # where no q_t is clipped, 1 + (K-3) q_t = K p_t exactly (docs/original.md §3: "E[count_t] ~= K p_t")
    p = pal_probabilities(N, epoch, 10)
    if ((k * p - 1) / (k - 3) > 0.025).all() and ((k * p - 1) / (k - 3) < 1).all():
        for t, pt in zip(TASKS, p):
            assert mean[t] == pytest.approx(k * pt, abs=0.15)
    # the order within a group is shuffled (sst is not always first)
    assert len({g[0] for g in groups}) == 3


def test_force_group_uses_plain_pal_probabilities():
    s = TaskSampler("pal_control", TASKS, N, 10, seed=5, k=16)
    groups = [s.group(combine="force") for _ in range(3000)]
    p = pal_probabilities(N, 1, 10)
    assert all(set(g) == set(TASKS) and len(g) == 16 for g in groups)
    for t, pt in zip(TASKS, p):
        assert np.mean([g.count(t) for g in groups]) == pytest.approx(1 + 13 * pt, abs=0.15)


@pytest.mark.parametrize("kind", SAMPLERS)
def test_state_dict_round_trip_reproduces_draws(kind):
    a = TaskSampler(kind, TASKS, N, 10, seed=7, k=6)
    a.set_epoch(4)
    for _ in range(11):
        a.next_task()
    a.group()
    state = a.state_dict()
    expected = [a.next_task() for _ in range(50)] + a.group() + a.group(combine="force")
    b = TaskSampler(kind, TASKS, N, 10, seed=999, k=6)
    b.load_state_dict(state)
    assert b.epoch == 4
    got = [b.next_task() for _ in range(50)] + b.group() + b.group(combine="force")
    assert got == expected


def test_state_dict_survives_torch_save(tmp_path):
    import torch

    a = TaskSampler("pal_control", TASKS, N, 10, seed=7, k=6)
    a.group()
    torch.save(a.state_dict(), tmp_path / "s.pt")
    expected = [a.group() for _ in range(5)]
    b = TaskSampler("pal_control", TASKS, N, 10, seed=0, k=6)
    b.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert [b.group() for _ in range(5)] == expected


def test_same_seed_same_draws_and_errors():
    a = TaskSampler("pal", TASKS, N, 10, seed=1)
    b = TaskSampler("pal", TASKS, N, 10, seed=1)
    assert [a.next_task() for _ in range(100)] == [b.next_task() for _ in range(100)]
    with pytest.raises(ValueError) as err:
        TaskSampler("annealed", TASKS, N, 10)
    assert "'annealed'" in str(err.value) and "pal_control" in str(err.value)
    with pytest.raises(ValueError, match="sts"):
        TaskSampler("pal", TASKS, {"sst": 1, "para": 2}, 10)
