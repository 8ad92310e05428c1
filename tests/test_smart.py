"""SMART regulariser: non-negativity, zero for constants, sensitivity to sharpness, gradients, seeding."""

import pytest
import torch
from torch import nn

from mtlib.methods.smart import KINDS, smart_divergence, smart_regularizer


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


OUT_DIM = {"classification": 5, "binary": 1, "regression": 1}


def head(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, OUT_DIM[kind]))


def run(model: nn.Module, embeds: torch.Tensor, kind: str, **kwargs) -> torch.Tensor:
    squeeze = kind != "classification"  # binary/regression heads emit one logit per example

    def forward_fn(x):
        out = model(x)
        return out.squeeze(-1) if squeeze else out

    return smart_regularizer(forward_fn, embeds, forward_fn(embeds), kind, generator=gen(), **kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_non_negative_and_finite_gradients(kind):
    model = head(kind)
    embeds = torch.randn(6, 8, requires_grad=True)  # stands in for the encoder's output
    reg = run(model, embeds, kind)
    assert reg.dim() == 0 and reg.item() >= 0.0
    reg.backward()
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())
    assert embeds.grad is not None and torch.isfinite(embeds.grad).all()


@pytest.mark.parametrize("kind", KINDS)
def test_zero_for_constant_function(kind):
    bias = nn.Parameter(torch.randn(OUT_DIM[kind]))
    embeds = torch.randn(4, 8)
    shape = (4, OUT_DIM[kind]) if kind == "classification" else (4,)

    def constant(x):
        return bias.expand(4, OUT_DIM[kind]).reshape(shape)  # ignores its input

    reg = smart_regularizer(constant, embeds, constant(embeds), kind, generator=gen())
    assert reg.item() == pytest.approx(0.0, abs=1e-12)
    # An output that carries no graph at all is handled too.
    fixed = torch.randn(shape)
    assert smart_regularizer(lambda x: fixed, embeds, fixed, kind).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_sharper_function_is_penalised_more(kind):
    torch.manual_seed(0)
    weight = torch.randn(8, OUT_DIM[kind])
    embeds = torch.randn(10, 8)

    def value(scale: float) -> float:
        def forward_fn(x):
            out = torch.tanh(x) @ (scale * weight)
            return out if kind == "classification" else out.squeeze(-1)

        return smart_regularizer(forward_fn, embeds, forward_fn(embeds), kind, generator=gen()).item()

    smooth, sharp = value(0.5), value(5.0)
    assert 0.0 < smooth < sharp


def test_deterministic_with_seeded_generator():
    model = head("classification")
    model.eval()  # no dropout here, but keep the example honest
    embeds = torch.randn(6, 8)
    clean = model(embeds)
    first = smart_regularizer(model, embeds, clean, "classification", generator=gen(3))
    again = smart_regularizer(model, embeds, clean, "classification", generator=gen(3))
    other = smart_regularizer(model, embeds, clean, "classification", generator=gen(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_ascent_increases_the_divergence():
    model = head("classification")
    embeds = torch.randn(6, 8)
    clean = model(embeds)
    no_ascent = smart_regularizer(model, embeds, clean, "classification", num_steps=0, generator=gen())
    ascent = smart_regularizer(model, embeds, clean, "classification", num_steps=2, generator=gen())
    assert ascent.item() > no_ascent.item()


def test_three_dimensional_embeddings_and_no_grad_caller():
    # Token-level inputs [B, L, H], as when perturbing the encoder's input embeddings.
    model = head("regression")
    embeds = torch.randn(3, 7, 8)

    def forward_fn(x):
        return model(x).mean(dim=(1, 2))

    with torch.no_grad():  # e.g. logged during evaluation: the ascent still works
        reg = smart_regularizer(forward_fn, embeds, forward_fn(embeds), "regression", generator=gen())
    assert reg.item() > 0.0


def test_divergence_hand_values():
    # softmax([1, 0]) = (s, 1-s) with s = sigmoid(1); against (1/2, 1/2) the symmetric KL is
    # sum (p-q)(log p - log q) = (1/2 - s)(log(1-s) - log s) = (1/2 - s)(-1) = s - 1/2.
    s = torch.sigmoid(torch.tensor(1.0)).item()
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    assert smart_divergence(a, b, "classification").item() == pytest.approx(s - 0.5, rel=1e-6)
    # Bernoulli(sigmoid(z)) is the two-class softmax of [z, 0]: same value.
    binary = smart_divergence(torch.tensor([0.0]), torch.tensor([1.0]), "binary")
    assert binary.item() == pytest.approx(s - 0.5, rel=1e-6)
    assert smart_divergence(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0]), "regression").item() == 2.5
    with pytest.raises(ValueError, match="classification, binary, regression"):
        smart_divergence(a, b, "ranking")


def test_smart_pytorch_step_rule_uses_unit_inf_norm_noise():
    torch.manual_seed(0)
    weight = torch.randn(8, 3)
    embeds = torch.randn(5, 8)

    def forward_fn(x):
        return x @ weight  # linear: the perturbed output moves by noise @ weight exactly

    paper = smart_regularizer(forward_fn, embeds, forward_fn(embeds), "classification", generator=gen())
    package = smart_regularizer(
        forward_fn, embeds, forward_fn(embeds), "classification", generator=gen(), step_rule="smart_pytorch"
    )
    assert package.item() > 1e4 * paper.item()  # inf-norm 1 noise vs a 1e-3 step
    with pytest.raises(ValueError, match="paper, smart_pytorch"):
        smart_regularizer(forward_fn, embeds, forward_fn(embeds), "classification", step_rule="vat")


def test_binary_equals_two_class_softmax():
    # Bernoulli(sigmoid(z)) is softmax([z, 0]); both divergences must agree for any logits.
    torch.manual_seed(2)
    z1, z2 = 3 * torch.randn(32), 3 * torch.randn(32)
    as_classes = smart_divergence(torch.stack([z1, 0 * z1], -1), torch.stack([z2, 0 * z2], -1), "classification")
    assert smart_divergence(z1, z2, "binary").item() == pytest.approx(as_classes.item(), rel=1e-5)
