"""SMART smoothness-inducing adversarial regulariser.

Jiang, He, Chen, Liu, Gao, Zhao 2020, "SMART: Robust and Efficient Fine-Tuning for Pre-trained Natural
Language Models through Principled Regularized Optimization" (ACL 2020), section 3.1 / Algorithm 1:

    R_s(theta) = mean_i  max_{|x~_i - x_i|_inf <= eps}  l_s(f(x~_i; theta), f(x_i; theta))

approximated by starting from x_i + N(0, sigma^2) noise and taking a few normalised gradient-ascent
steps on the divergence. Deviation from the original code (spec section 4 and 9.4): it computed this value
and threw it away, so "+ SMART" changed nothing; here the caller adds ``lambda * R_s`` to the loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["smart_divergence", "smart_regularizer", "KINDS"]

Kind = Literal["classification", "binary", "regression"]
KINDS: tuple[str, ...] = ("classification", "binary", "regression")


def _batch_mean(per_element: Tensor) -> Tensor:
    """Sum over everything but the batch dimension, then average over the batch."""
    return per_element.reshape(per_element.shape[0], -1).sum(1).mean() if per_element.dim() else per_element


def smart_divergence(perturbed: Tensor, clean: Tensor, kind: Kind) -> Tensor:
    """The symmetric divergence l_s between two model outputs, batch-mean, in float32.

    - classification: symmetric KL of the softmax distributions, ``sum (p - q)(log p - log q)``;
    - binary: symmetric KL of Bernoulli(sigmoid(z)); it simplifies to ``(p - q)(z_p - z_q)``,
      which needs no log of a saturated probability;
    - regression: mean squared difference (the paper's choice for regression tasks).
    """
    # float32 so bf16/fp16 autocast outputs do not lose the tiny differences SMART measures.
    a, b = perturbed.float(), clean.float()
    if kind == "classification":
        log_p, log_q = F.log_softmax(a, dim=-1), F.log_softmax(b, dim=-1)
        return _batch_mean(((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1))
    if kind == "binary":
        return _batch_mean((torch.sigmoid(a) - torch.sigmoid(b)) * (a - b))
    if kind == "regression":
        return F.mse_loss(a, b)
    raise ValueError(f"unknown SMART kind {kind!r}; allowed: {', '.join(KINDS)}")


def _per_example_inf_norm(x: Tensor) -> Tensor:
    """max |x| over every dimension but the batch one, shaped to broadcast against x."""
    return x.abs().reshape(x.shape[0], -1).amax(1).view(-1, *([1] * (x.dim() - 1)))


def smart_regularizer(
    forward_fn: Callable[[Tensor], Tensor],
    embeds: Tensor,
    clean_output: Tensor,
    kind: Kind,
    *,
    noise_var: float = 1e-5,
    step_size: float = 1e-3,
    epsilon: float = 1e-6,
    num_steps: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SMART's R_s for one batch: a scalar, >= 0, differentiable w.r.t. the model parameters.

    ``forward_fn`` maps input embeddings shaped like ``embeds`` (batch first) to the model output that
    ``clean_output`` holds for the unperturbed ``embeds``. Defaults follow the paper: noise variance
    sigma^2 = 1e-5, ascent step eta = 1e-3, one step. Each step moves the noise by ``step_size`` along
    the gradient divided by its per-example inf-norm (+ ``epsilon``); as in the common implementation
    (``smart_pytorch``) there is no projection back onto an eps-ball, ``step_size`` bounds the move.

    The final term is evaluated on ``embeds + noise`` with ``embeds`` and ``clean_output`` *not*
    detached, so gradients reach the parameters through both branches, as in SMART. ``generator``
    must live on ``embeds``' device. Dropout inside ``forward_fn`` adds to the value; that is what the
    original code did (it perturbed the head's input with the head in train mode).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown SMART kind {kind!r}; allowed: {', '.join(KINDS)}")
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    base = embeds.detach()
    target = clean_output.detach()
    noise = torch.randn(base.shape, generator=generator, device=base.device, dtype=base.dtype)
    noise = noise * noise_var**0.5  # N(0, sigma^2): noise_var is a variance, as in the paper
    # The ascent needs autograd even when the caller evaluates under no_grad.
    with torch.enable_grad():
        for _ in range(num_steps):
            noise.requires_grad_(True)
            divergence = smart_divergence(forward_fn(base + noise), target, kind)
            grad = None
            if divergence.requires_grad:
                (grad,) = torch.autograd.grad(divergence, noise, allow_unused=True)
            if grad is None:  # output does not depend on the input: nothing to ascend
                grad = torch.zeros_like(noise)
            noise = (noise + step_size * grad / (_per_example_inf_norm(grad) + epsilon)).detach()
    return smart_divergence(forward_fn(embeds + noise), clean_output, kind)
