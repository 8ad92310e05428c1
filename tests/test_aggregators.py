"""Every gradient method (sum, PCGrad, GradVac and torchjd's Gramian weightings): the properties each paper
promises, over seeded families of random gradient sets, degenerate inputs, and agreement with torchjd."""

import itertools

import pytest
import torch

from mtlib.methods.gradients import COMBINERS, make_combiner
from mtlib.methods.gradients.aggregators import AGGREGATORS

METHODS = sorted(COMBINERS)
# what each method promises (its paper, or torchjd's proofs for UPGrad / DualProj)
SUM_WITHOUT_CONFLICT = ("sum", "pcgrad", "gradvac", "upgrad", "dualproj")  # a positive multiple of the sum
ORDER_INVARIANT = ("sum", "upgrad", "mgda", "cagrad", "imtlg", "alignedmtl", "dualproj", "nashmtl")
SCALE_LINEAR = ("sum", "pcgrad", "gradvac", "upgrad", "mgda", "cagrad", "imtlg", "alignedmtl", "dualproj", "rlw")
# and PCGrad for two tasks. DualProj promises it too, but torchjd's QP regularisation (reg_eps) leaves small
# negative inner products of ~1e-3 of the gradients' scale on a few of these draws: not tested here.
NON_CONFLICTING = ("upgrad", "mgda")


def families(count: int = 12, conflict: bool | None = None):
    """Seeded random gradient sets [T, D], T in 2..4; ``conflict=False``: every pair has a positive inner product."""
    found, seed = [], 0
    while len(found) < count:
        g = torch.Generator().manual_seed(seed)
        seed += 1
        grads = torch.randn(2 + seed % 3, 6, generator=g, dtype=torch.float64).float()
        if conflict is False:
            grads = grads.abs() * torch.sign(torch.randn(1, 6, generator=g))  # one orthant: no conflict
        found.append(grads)
    return found


def combine(name: str, grads: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return make_combiner(name, grads.shape[0])(grads, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", SUM_WITHOUT_CONFLICT)
def test_no_conflict_gives_a_positive_multiple_of_the_sum(name):
    for grads in families(conflict=False):
        update, total = combine(name, grads), grads.sum(0)
        scale = float(update @ total / (total @ total))
        assert scale > 0
        assert torch.allclose(update, scale * total, atol=1e-4 * float(total.norm()))


@pytest.mark.parametrize("name", ORDER_INVARIANT)
def test_task_order_does_not_matter(name):
    for grads in families(6):
        for perm in itertools.permutations(range(grads.shape[0])):
            assert torch.allclose(combine(name, grads[list(perm)]), combine(name, grads), atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("name", SCALE_LINEAR)
def test_linear_under_scaling(name):
    for grads, factor in zip(families(6), (0.1, 0.5, 3.0, 10.0, 2.0, 0.25)):
        assert torch.allclose(
            combine(name, factor * grads), factor * combine(name, grads), atol=2e-3 * factor, rtol=2e-3
        )


@pytest.mark.parametrize("name", [*NON_CONFLICTING, "pcgrad"])
def test_the_update_conflicts_with_no_task(name):
    for grads in families(20):
        if name == "pcgrad" and grads.shape[0] != 2:
            continue
        update = combine(name, grads)
        for g in grads:
            assert float(update @ g) >= -1e-4 * float(g.norm() * update.norm() + 1e-12)


@pytest.mark.parametrize("name", METHODS)
def test_degenerate_inputs_give_finite_updates(name):
    g = torch.tensor([1.0, -2.0, 0.5])
    cases = [
        torch.zeros(3, 3),
        torch.stack([g, torch.zeros(3), -g]),
        torch.stack([g, g]),
        g[None],
        torch.stack([g, -g]),
    ]
    for grads in cases:
        update = combine(name, grads)
        assert update.shape == (3,) and torch.isfinite(update).all()
    assert torch.equal(combine(name, torch.zeros(3, 3)), torch.zeros(3))


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_aggregators_are_weights_on_the_rows_and_keep_their_state(name):
    grads = families(1)[0]
    combiner = make_combiner(name, grads.shape[0])
    update = combiner(grads, generator=torch.Generator().manual_seed(4))
    weights = torch.tensor(combiner.last_weights, dtype=torch.float32)
    assert torch.allclose(update, weights @ grads, atol=1e-5)
    assert torch.allclose(
        combiner.project(grads, torch.Generator().manual_seed(4)), weights[:, None] * grads, atol=1e-5
    )
    again = make_combiner(name, grads.shape[0])
    again.load_state_dict(combiner.state_dict())
    nxt = grads.flip(1)
    assert torch.allclose(
        combiner(nxt, generator=torch.Generator().manual_seed(5)),
        again(nxt, generator=torch.Generator().manual_seed(5)),
        atol=1e-5,
    )


def test_rlw_draws_from_the_step_generator_and_leaves_the_global_rng_alone():
    grads = families(1)[0]
    state = torch.get_rng_state()
    a, b = combine("rlw", grads, seed=1), combine("rlw", grads, seed=1)
    assert torch.equal(a, b) and not torch.allclose(a, combine("rlw", grads, seed=2))
    assert torch.equal(torch.get_rng_state(), state)


def test_pcgrad_and_gradvac_agree_with_torchjd_for_two_tasks():
    """For T = 2 the visiting order is fixed, so mtlib's Gram-matrix PCGrad / GradVac and torchjd's must agree."""
    from torchjd.aggregation import GradVacWeighting, PCGradWeighting

    ours_vac, theirs_vac = make_combiner("gradvac", 2, beta=0.5), GradVacWeighting(beta=0.5)
    for grads in (g[:2] for g in families(10)):
        gram = grads.double() @ grads.double().T
        ours = make_combiner("pcgrad", 2)._coefficient_tensor(grads, None).double().sum(0)
        assert torch.allclose(ours, PCGradWeighting()(gram), atol=1e-5)
        ours = ours_vac._coefficient_tensor(grads, None).double().sum(0)  # a sequence: the EMA targets move
        assert torch.allclose(ours, theirs_vac(gram), atol=1e-5)
