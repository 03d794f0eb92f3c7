"""Hessian-vector products by double backward, checked against finite differences.

    python examples/hessian_vector_product.py            # 3 random directions
    python examples/hessian_vector_product.py --steps 1  # one direction

For a loss L(w), the Hessian-vector product H v is the gradient of <grad L(w), v> with
respect to w. `create_graph=True` records the first backward pass as a graph of its own, so
it can be differentiated again; H is never formed. Finite differences give the same thing
from two gradients: H v ~ (grad L(w + eps v) - grad L(w - eps v)) / (2 eps).
"""

import argparse

import numpy as np

import tinygrad_np as tg
import tinygrad_np.nn.functional as F

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--steps", type=int, default=3, help="random directions to check")
args = parser.parse_args()

# A small conv net in float64, its weights as plain Tensors: conv -> tanh -> linear -> loss.
tg.manual_seed(0)
rng = np.random.default_rng(0)
x = tg.Tensor(rng.standard_normal((4, 2, 7, 7)))  # (N, C, H, W), float64
target = rng.integers(0, 3, 4)
conv_w = tg.Tensor(0.3 * rng.standard_normal((5, 2, 3, 3)), requires_grad=True)
lin_w = tg.Tensor(0.1 * rng.standard_normal((3, 5 * 3 * 3)), requires_grad=True)
params = [conv_w, lin_w]


def loss_fn(conv_w, lin_w):
    h = F.conv2d(x, conv_w, stride=2).tanh()  # (4, 5, 3, 3)
    return F.cross_entropy(F.linear(h.flatten(1), lin_w), target)


def gradient(ws):
    """grad L at ws, as NumPy arrays (a fresh graph each time)."""
    ws = [tg.Tensor(w, requires_grad=True) for w in ws]
    return [g.numpy() for g in tg.grad(loss_fn(*ws), ws)]


def hvp(v):
    """H v by double backward: differentiate <grad L, v> once more."""
    grads = tg.grad(loss_fn(*params), params, create_graph=True)  # grads are in a graph
    dot = sum((g * tg.Tensor(vi)).sum() for g, vi in zip(grads, v, strict=True))  # <grad L, v>
    return [h.numpy() for h in tg.grad(dot, params)]


worst = 0.0
for i in range(args.steps):
    v = [rng.standard_normal(p.shape) for p in params]
    exact = hvp(v)
    eps = 1e-5
    plus = gradient([p.numpy() + eps * vi for p, vi in zip(params, v, strict=True)])
    minus = gradient([p.numpy() - eps * vi for p, vi in zip(params, v, strict=True)])
    numeric = [(a - b) / (2 * eps) for a, b in zip(plus, minus, strict=True)]
    err = max(
        np.abs(e - n).max() / (np.abs(n).max() + 1e-12) for e, n in zip(exact, numeric, strict=True)
    )
    worst = max(worst, err)
    print(
        f"direction {i}: |Hv| = {np.sqrt(sum((h**2).sum() for h in exact)):.6f}, "
        f"relative error vs finite differences {err:.2e}"
    )

assert worst < 1e-6, f"double backward disagrees with finite differences ({worst:.2e})"
print("double backward matches finite differences")
