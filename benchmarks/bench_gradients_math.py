"""Time the gradient combiners against a direct per-pair implementation (the original's shape).

    python benchmarks/bench_gradients_math.py [--dim 22700000] [--device cpu|cuda] [--repeats 5]

The default D is MiniLM-L6's encoder size; BERT-base is about 110M. Checks the results agree too.
"""

from __future__ import annotations

import argparse
import time

import torch

from mtlib.methods.gradients import GradVac, PCGrad, TaskGradients


def direct_pcgrad(grads: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-pair D-length dot products and updates, as in the original ``pcgrad_amp.py``."""
    out = torch.zeros_like(grads[0])
    for i in range(grads.shape[0]):
        g = grads[i].clone()
        others = [j for j in range(grads.shape[0]) if j != i]
        for k in torch.randperm(len(others), generator=generator).tolist():
            j = others[k]
            dot = g @ grads[j]
            if dot < 0:
                g -= dot / (grads[j] @ grads[j]) * grads[j]
        out += g
    return out


def timed(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dim", type=int, default=22_700_000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    grads = torch.randn(3, args.dim, device=args.device)
    # Clear-cut angles: random D-dim vectors are nearly orthogonal, and a float32 dot product can flip
    # the sign of a ~1e-4 cosine, which changes whether a (negligible) projection fires.
    grads[1] = -0.5 * grads[0] + grads[1]  # conflicts with task 0
    grads[2] = 0.3 * grads[0] + grads[2]  # agrees with task 0, conflicts with task 1

    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    exact = direct_pcgrad(grads.double(), gen())  # float64 reference (allocates a T x D copy)

    def rel_error(update: torch.Tensor) -> float:
        return ((update.double() - exact).norm() / exact.norm()).item()

    gram_error, direct_error = rel_error(PCGrad(3)(grads, gen())), rel_error(direct_pcgrad(grads, gen()))
    print(
        f"D={args.dim:,} on {args.device}; relative error vs float64 PCGrad: "
        f"Gram-based {gram_error:.1e}, direct float32 {direct_error:.1e}"
    )
    exact = None  # the float64 copy is not needed for the timings below
    rows = {
        "sum": lambda: grads.sum(0),
        "pcgrad (Gram)": lambda: PCGrad(3)(grads, gen()),
        "pcgrad (direct per pair)": lambda: direct_pcgrad(grads, gen()),
        "gradvac (Gram)": lambda: GradVac(3)(grads, gen()),
    }
    for name, fn in rows.items():
        print(f"{name:28s} {timed(fn, args.repeats, args.device):9.2f} ms")

    # store/write round trip over a realistic parameter list (many tensors, like an encoder).
    sizes = [768 * 768] * (args.dim // (768 * 768)) or [args.dim]
    params = [torch.nn.Parameter(torch.zeros(n, device=args.device)) for n in sizes]
    for p in params:
        p.grad = torch.randn_like(p)
    buf = TaskGradients(params, num_tasks=3)

    def round_trip():
        for t in range(3):
            buf.store(t)
        buf.write(buf.buffer.sum(0))

    def cat_round_trip():  # the original: torch.cat of flattened grads per task, then a loop of copy_
        flat = [torch.cat([p.grad.flatten() for p in params]) for _ in range(3)]
        merged, offset = torch.stack(flat).sum(0), 0
        for p in params:
            p.grad.copy_(merged[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    print(
        f"{'TaskGradients store x3+write':28s} {timed(round_trip, args.repeats, args.device):9.2f} ms"
        f"  ({len(params)} tensors)"
    )
    print(f"{'torch.cat x3 + copy back':28s} {timed(cat_round_trip, args.repeats, args.device):9.2f} ms")


if __name__ == "__main__":
    main()
