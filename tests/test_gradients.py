"""Gradient combiners: mathematical properties (torchjd style) plus hand-computed examples."""

import math

import pytest
import torch
from torch import nn

from mtlib.methods.gradients import (
    GradVac,
    PCGrad,
    TaskGradients,
    compromise_beta,
    compromise_weights,
    conflict_stats,
    make_combiner,
    pcgrad,
    sum_gradients,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


# --- properties ---------------------------------------------------------------------------------


def test_no_conflict_is_plain_sum():
    torch.manual_seed(0)
    grads = torch.rand(3, 50)  # non-negative entries: every pairwise dot product is positive
    expected = grads.sum(0)
    assert torch.allclose(sum_gradients(grads), expected)
    assert torch.allclose(pcgrad(grads, generator=gen()), expected)
    vac = GradVac(3)  # targets 0 and all cosines > 0: nothing fires
    assert torch.allclose(vac(grads, generator=gen()), expected)
    assert vac.last_fired == 0


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_two_tasks_removes_conflict(seed):
    torch.manual_seed(seed)
    g1 = torch.randn(20)
    g2 = -g1 + 0.3 * torch.randn(20)  # strongly conflicting
    grads = torch.stack([g1, g2])
    projected = PCGrad(2).project(grads, generator=gen())
    # Each projected gradient is orthogonal to the other task's original gradient.
    assert projected[0] @ g2 == pytest.approx(0.0, abs=1e-4)
    assert projected[1] @ g1 == pytest.approx(0.0, abs=1e-4)
    assert float(projected[0] @ projected[1]) >= -1e-4


@pytest.mark.parametrize("seed", range(5))
def test_gradvac_with_zero_target_equals_pcgrad(seed):
    torch.manual_seed(seed)
    grads = torch.randn(3, 30)
    # Same generator seed -> same visiting order in both methods.
    expected = pcgrad(grads, generator=gen(seed))
    got = GradVac(3)(grads, generator=gen(seed))
    assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.9])
def test_gradvac_reaches_positive_target(target):
    torch.manual_seed(1)
    g1, g2 = torch.randn(40), torch.randn(40)
    grads = torch.stack([g1, g2])
    vac = GradVac(2)
    vac.load_state_dict({"target": torch.full((2, 2), target)})
    projected = vac.project(grads, generator=gen())
    assert cos(g1, g2) < target  # precondition: the correction fires
    assert cos(projected[0], g2) == pytest.approx(target, abs=1e-5)
    assert cos(projected[1], g1) == pytest.approx(target, abs=1e-5)
    assert vac.last_fired == 2


def test_gradvac_ema_every_vs_on_fire():
    agree = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # cos = 1/sqrt(2) > 0: never fires at target 0
    every, on_fire = GradVac(2, beta=0.1, update="every"), GradVac(2, beta=0.1, update="on_fire")
    every(agree, generator=gen())
    on_fire(agree, generator=gen())
    c = 1 / math.sqrt(2)
    assert torch.allclose(every.target, torch.tensor([[0.0, 0.1 * c], [0.1 * c, 0.0]], dtype=torch.float64))
    assert on_fire.target.tolist() == [[0.0, 0.0], [0.0, 0.0]]

    conflict = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # cos = -1/sqrt(2) < 0: fires for both tasks
    on_fire(conflict, generator=gen())
    assert torch.allclose(on_fire.target, torch.tensor([[0.0, -0.1 * c], [-0.1 * c, 0.0]], dtype=torch.float64))
    every(conflict, generator=gen())  # fires too: target[i][j] = 0.9 * 0.1c + 0.1 * (-c)
    assert every.target[0, 1].item() == pytest.approx(0.9 * 0.1 * c - 0.1 * c)


def test_gradvac_state_round_trip():
    vac = GradVac(3, beta=0.05, update="on_fire")
    vac(torch.randn(3, 10), generator=gen())
    fresh = GradVac(3)
    fresh.load_state_dict(vac.state_dict())
    assert torch.equal(fresh.target, vac.target)
    assert (fresh.beta, fresh.update) == (0.05, "on_fire")
    with pytest.raises(ValueError):
        GradVac(2).load_state_dict(vac.state_dict())


def test_non_finite_gradients_pass_through_and_leave_state_alone():
    grads = torch.tensor([[1.0, 0.0], [-1.0, float("inf")]])
    vac = GradVac(2)
    out = vac(grads, generator=gen())
    assert torch.isinf(out).any()  # the GradScaler sees the overflow and skips the step
    assert torch.equal(vac.target, torch.zeros(2, 2, dtype=torch.float64))


def test_zero_gradient_is_guarded():
    grads = torch.tensor([[0.0, 0.0], [-1.0, 1.0]])
    assert torch.equal(pcgrad(grads, generator=gen()), torch.tensor([-1.0, 1.0]))
    assert torch.equal(GradVac(2)(grads, generator=gen()), torch.tensor([-1.0, 1.0]))


def test_seeded_generator_is_deterministic():
    torch.manual_seed(3)
    grads = torch.randn(3, 25)
    assert torch.equal(pcgrad(grads, generator=gen(7)), pcgrad(grads, generator=gen(7)))


# --- hand-computed examples ------------------------------------------------------------------------


def test_pcgrad_2d_example():
    # g1.g2 = -1: g1' = g1 - (-1/2) g2 = (0.5, 0.5); g2' = g2 - (-1/1) g1 = (0, 1); sum = (0.5, 1.5).
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    expected = torch.tensor([0.5, 1.5])
    assert torch.allclose(pcgrad(grads, generator=gen()), expected)
    assert torch.allclose(PCGrad(2).project(grads, generator=gen()), torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    assert torch.allclose(GradVac(2)(grads, generator=gen()), expected)  # target 0 = projection


@pytest.mark.parametrize("seed", range(4))
def test_pcgrad_3d_example(seed):
    # g1=(-2,-2,0), g2=(-1,-1,0), g3=(0,1,-1); g1.g2=4, g1.g3=-2, g2.g3=-1.
    # g1' = g1 + (2/2) g3 = (-2,-1,-1), then g1'.g2 = 3 >= 0: done (either order).
    # g2' = g2 + (1/2) g3 = (-1,-0.5,-0.5).
    # g3 first against g1: g3 + (2/8) g1 = (-0.5,0.5,-1), whose dot with g2 is 0: done;
    #    first against g2: g3 + (1/2) g2 = (-0.5,0.5,-1), whose dot with g1 is 0: done.
    # Sum = (-3.5, -1, -2.5) whatever the order.
    grads = torch.tensor([[-2.0, -2.0, 0.0], [-1.0, -1.0, 0.0], [0.0, 1.0, -1.0]])
    combiner = PCGrad(3)
    assert torch.allclose(combiner(grads, generator=gen(seed)), torch.tensor([-3.5, -1.0, -2.5]))
    assert combiner.last_fired == 3


def test_gradvac_2d_example_with_target():
    # g1=(1,0), g2=(0,1): phi=0, target 0.5 -> g1' = g1 + g2 * 1 * (0.5*1 - 0) / (1 * sqrt(0.75))
    grads = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    vac = GradVac(2, beta=0.0)
    vac.load_state_dict({"target": torch.tensor([[0.0, 0.5], [0.5, 0.0]])})
    k = 0.5 / math.sqrt(0.75)
    assert torch.allclose(vac.project(grads, generator=gen()), torch.tensor([[1.0, k], [k, 1.0]]))


# --- conflict statistics, compromise, factory -----------------------------------------------------


def test_conflict_stats_values():
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, 2.0]])
    stats = conflict_stats(grads, names=["sst", "para", "sts"])
    r = 1 / math.sqrt(2)
    assert stats["pairs"] == pytest.approx({"sst|para": -r, "sst|sts": 0.0, "para|sts": r})
    assert stats["conflict_share"] == pytest.approx(1 / 3)
    assert stats["norms"] == pytest.approx({"sst": 1.0, "para": math.sqrt(2), "sts": 2.0})
    assert stats["cosine"][1][0] == pytest.approx(-r)
    assert stats["cosine"][2][2] == pytest.approx(1.0)
    unnamed = conflict_stats(grads)
    assert set(unnamed["pairs"]) == {"0|1", "0|2", "1|2"}


def test_compromise_beta():
    assert compromise_beta(1, 5) == pytest.approx(0.2)
    assert compromise_beta(3, 5) == pytest.approx(0.6)
    assert compromise_beta(5, 5) == pytest.approx(1.0)
    assert compromise_beta(1, 1) == 1.0  # the original divided by zero here
    with pytest.raises(ValueError):
        compromise_beta(0, 5)


def test_compromise_weights():
    assert compromise_weights({"sst": 4, "para": 9, "sts": 0}, 0.5) == pytest.approx(
        {"sst": 2.0, "para": 3.0, "sts": 1.0}
    )
    assert torch.allclose(compromise_weights(torch.tensor([1, 8, 27]), 1 / 3), torch.tensor([1.0, 2.0, 3.0]))


def test_make_combiner():
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    for name in ("sum", "pcgrad", "gradvac"):
        combiner = make_combiner(name, 2)
        assert combiner(grads, generator=gen()).shape == (2,)
    assert make_combiner("gradvac", 2, beta=0.1, update="on_fire").update == "on_fire"
    # A trainer passes GradVac's options whatever the method; the others ignore them.
    assert isinstance(make_combiner("pcgrad", 2, beta=0.1, update="every"), PCGrad)
    with pytest.raises(ValueError, match="betta"):
        make_combiner("gradvac", 2, betta=0.1)
    with pytest.raises(ValueError, match="gradvac, imtlg, mgda, nashmtl, pcgrad, rlw, sum, upgrad"):
        make_combiner("graddrop", 2)
    with pytest.raises(ValueError, match="expected 2 task gradients"):
        make_combiner("pcgrad", 2)(torch.zeros(3, 4))


# --- TaskGradients ---------------------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(2, 1)
        self.unused = nn.Parameter(torch.ones(4))  # never receives a gradient
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)

    def forward(self, x):
        return self.b(self.a(x)).sum()


def test_task_gradients_store_write_round_trip():
    torch.manual_seed(0)
    model = Tiny()
    buf = TaskGradients(model.parameters(), num_tasks=2)
    assert buf.dim == 3 * 2 + 2 + 2 + 1 + 4  # frozen parameter left out
    expected = []
    for t in range(2):
        buf.zero_grads()
        model(torch.randn(5, 3)).backward()
        expected.append(
            torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in buf.params])
        )
        buf.store(t)
    assert model.unused.grad is None
    assert torch.equal(buf.buffer, torch.stack(expected))
    start = sum(p.numel() for p in buf.params[: [id(q) for q in buf.params].index(id(model.unused))])
    assert torch.equal(buf.buffer[:, start : start + 4], torch.zeros(2, 4))  # zeros where grad is None

    update = torch.arange(buf.dim, dtype=torch.float32)
    buf.write(update)
    assert model.unused.grad is not None  # created where it was None
    assert torch.equal(torch.cat([p.grad.flatten() for p in buf.params]), update)
    assert model.frozen.grad is None


def test_task_gradients_buffer_is_reused():
    model = Tiny()
    buf = TaskGradients(model.parameters(), num_tasks=3)
    ptr, update_ptr = buf.buffer.data_ptr(), buf._update.data_ptr()
    grad_ptrs = None
    for _ in range(3):  # three optimizer updates
        for t in range(3):
            buf.zero_grads()
            model(torch.randn(4, 3)).backward()
            buf.store(t)
        buf.write(pcgrad(buf.buffer, generator=gen()))
        ptrs = [p.grad.data_ptr() for p in buf.params]
        assert grad_ptrs in (None, ptrs)  # .grad tensors stay views of the one update buffer
        grad_ptrs = ptrs
    assert buf.buffer.data_ptr() == ptr and buf._update.data_ptr() == update_ptr


def test_task_gradients_feeds_optimizer():
    model = Tiny()
    buf = TaskGradients(model.parameters(), num_tasks=1)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    before = model.a.weight.detach().clone()
    update = torch.ones(buf.dim)
    buf.write(update)
    opt.step()
    assert torch.allclose(model.a.weight, before - 1.0)
    opt.zero_grad()  # set_to_none=True by default; the next write re-creates the views
    buf.write(2 * update)
    assert torch.equal(model.a.weight.grad, torch.full_like(before, 2.0))


def test_gram_is_accurate_for_encoder_sized_gradients():
    # One float32 matmul over 3M same-sign terms is off by ~1e-3; the blocked Gram must not be.
    grads = torch.full((2, 3_000_000), 0.1)
    grads[1] *= -1
    exact = grads[0].double().norm().item()
    stats = conflict_stats(grads)
    assert stats["norms"]["0"] == pytest.approx(exact, rel=1e-5)
    assert stats["pairs"]["0|1"] == pytest.approx(-1.0, abs=1e-6)


def test_begin_lets_backward_accumulate_straight_into_the_buffer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    x = torch.randn(5, 4)
    tg = TaskGradients(list(model.parameters()), 2)
    expected = []
    for t in range(2):
        model.zero_grad(set_to_none=True)
        ((t + 1) * model(x).sum()).backward()
        expected.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    for t in range(2):
        tg.begin(t)
        ((t + 1) * model(x).sum()).backward()
        rows = tg._row_views[t]
        assert all(p.grad.data_ptr() == v.data_ptr() for p, v in zip(model.parameters(), rows))  # no copy
        tg.store(t)
        assert torch.allclose(tg.buffer[t], expected[t])


def test_combiner_writes_into_out_and_shares_its_gram():
    grads = torch.tensor([[1.0, 0.0, 2.0], [-1.0, 1.0, 0.5], [0.3, -0.2, 1.0]])
    for name in ("sum", "pcgrad", "gradvac"):
        combiner = make_combiner(name, 3)
        out = torch.empty(3)
        got = combiner(grads, generator=torch.Generator().manual_seed(1), out=out)
        assert got.data_ptr() == out.data_ptr()
        again = make_combiner(name, 3)(grads, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(out, again)
        if combiner.last_gram is not None:
            assert conflict_stats(grads, gram=combiner.last_gram) == conflict_stats(grads)


# --- row-sparse embedding tables ---------------------------------------------------------------------


class Embedder(nn.Module):
    """A toy encoder with a word-embedding table, optionally also used densely (a tied output layer)."""

    def __init__(self, vocab=50, width=4, tied=False):
        super().__init__()
        self.words = nn.Embedding(vocab, width, padding_idx=0)
        self.proj = nn.Linear(width, width)
        self.tied = tied

    def forward(self, ids, task):
        h = torch.tanh(self.proj(self.words(ids)))
        out = ((task + 1) * h).sum()
        if self.tied:
            out = out + (h @ self.words.weight.T).logsumexp(-1).sum()
        return out


def _task_grads(model, batches, **kwargs):
    tg = TaskGradients(list(model.parameters()), len(batches), **kwargs)
    for t, ids in enumerate(batches):
        tg.begin(t)
        if ids is not None:
            model(ids, t).backward()
        tg.store(t)
    return tg, tg.gradients()


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("method", ["sum", "pcgrad", "gradvac"])
def test_row_sparse_embeddings_give_the_same_update_as_dense(method, tied):
    torch.manual_seed(0)
    model = Embedder(tied=tied)
    batches = [torch.tensor([[1, 2, 3, 0]]), torch.tensor([[3, 4, 5, 5], [7, 1, 0, 0]]), None]
    dense, dense_grads = _task_grads(model, batches)
    sparse, sparse_grads = _task_grads(model, batches, embeddings=[model.words], capacity_rows=2)
    assert model.words.sparse is False  # switched back after gradients()
    assert dense_grads.shape[1] == dense.dim
    # rows 1..5 and 7 (the padding row 0 never gets a gradient); the tied use touches every row
    touched = 50 if tied else 6
    assert sparse_grads.shape[1] == sparse.dense_dim + touched * 4
    combined = {}
    for name, tg, grads in (("dense", dense, dense_grads), ("sparse", sparse, sparse_grads)):
        combiner = make_combiner(name=method, num_tasks=3)
        update = combiner(grads, generator=torch.Generator().manual_seed(3), out=tg.update_buffer)
        tg.write(update)
        assert torch.allclose(
            torch.tensor(conflict_stats(grads)["cosine"]),
            torch.tensor(conflict_stats(dense_grads)["cosine"]),
            atol=1e-6,
        )
        combined[name] = [p.grad.clone() for p in model.parameters()]
    for d, s in zip(combined["dense"], combined["sparse"]):
        assert not s.is_sparse and torch.allclose(d, s, atol=1e-6)
    assert sparse_grads[2].abs().sum() == 0  # a task without a batch has a zero gradient


def test_row_sparse_table_update_clears_rows_of_the_previous_update():
    torch.manual_seed(0)
    model = Embedder()
    tg = TaskGradients(list(model.parameters()), 1, embeddings=[model.words], capacity_rows=1)
    for ids in (torch.tensor([[1, 2, 3]]), torch.tensor([[9, 8]])):
        tg.begin(0)
        model(ids, 0).backward()
        tg.store(0)
        tg.write(make_combiner("sum", 1)(tg.gradients(), out=tg.update_buffer))
    rows = model.words.weight.grad.abs().sum(1).nonzero().flatten().tolist()
    assert rows == [8, 9]  # rows 1..3 of the first update were zeroed, nothing else written
    assert tg.buffer.shape[1] >= tg.dense_dim + 2 * 4  # the region grew past its capacity of one row


def test_bert_word_embeddings_are_the_row_sparse_table():
    from mtlib.model.backbones import load_backbone

    encoder, _ = load_backbone("tiny-random", seed=0)
    embeddings = encoder.get_input_embeddings()
    tg = TaskGradients(list(encoder.parameters()), 3, embeddings=[embeddings, embeddings, encoder.pooler])
    assert tg.tables == [embeddings]  # listed once
    assert tg.dense_dim == tg.dim - embeddings.weight.numel()
