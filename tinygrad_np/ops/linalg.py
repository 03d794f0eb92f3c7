"""Matrix products: matmul (1-D, 2-D, batched with broadcasting) and linear."""

from __future__ import annotations

import math

import numpy as np

from tinygrad_np import _parallel as par
from tinygrad_np.autograd import Op, bilinear_reads, is_grad_enabled
from tinygrad_np.ops.elementwise import const
from tinygrad_np.ops.reduce import leading_sum
from tinygrad_np.tensor import Tensor, tensor_input


def _consts(*arrays) -> tuple:
    return tuple(None if a is None else const(a) for a in arrays)


class Matmul(Op):
    """y = a @ b for a, b with ndim >= 2 (batch dims broadcast).

    VJP: ga = g @ b^T, gb = a^T @ g (the engine sums broadcast batch dims back).
    """

    inplace_reads = staticmethod(bilinear_reads)

    def forward(self, a, b):
        return par.matmul(a, b)

    def vjp(self, g):
        a, b = self.inputs
        if not is_grad_enabled():  # not recorded: the same products in NumPy
            gd, need = g.data, self.needs_grad
            ga = par.matmul(gd, np.swapaxes(b.data, -1, -2)) if need[0] else None
            gb = par.matmul(np.swapaxes(a.data, -1, -2), gd) if need[1] else None
            return _consts(ga, gb)
        ga = g @ b.transpose(-1, -2) if self.needs_grad[0] else None
        gb = a.transpose(-1, -2) @ g if self.needs_grad[1] else None
        return ga, gb


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with NumPy's rules: 1-D operands are promoted and the added dim removed."""
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"matmul: both operands need at least 1 dim, got shapes {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    k_a = a.shape[-1]
    k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
    try:
        if k_a != k_b:
            raise ValueError
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(
            f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not match "
            f"(inner dims {k_a} and {k_b}, batch dims must broadcast)"
        ) from None
    if a.ndim == 1 and b.ndim == 1:
        return (a.unsqueeze(0) @ b.unsqueeze(1)).reshape(())
    if a.ndim == 1:
        return Matmul.apply(a.unsqueeze(0), b).squeeze(-2)
    if b.ndim == 1:
        return Matmul.apply(a, b.unsqueeze(1)).squeeze(-1)
    return Matmul.apply(a, b)


class Linear(Op):
    """y = x @ w^T + b, x (..., in), w (out, in), b (out,).

    VJP: gx = g @ w; gw = g^T x summed over all leading dims; gb = g summed likewise.
    """

    inplace_reads = staticmethod(bilinear_reads)

    def forward(self, x, w, b=None):
        if x.ndim > 2 and x.size >= 4096:  # (..., in) as (rows, in): the 2-D products
            # below, split over the threads (np.matmul of a 3-D x runs on one: (32, 128,
            # 256) -> 512, 33 -> 20 ms; on a few entries the reshapes cost 2 us more)
            rows = math.prod(x.shape[:-1])
            y = self.forward(x.reshape(rows, x.shape[-1]), w, b)
            return y.reshape(x.shape[:-1] + (w.shape[0],))
        if x.ndim != 2:
            y = x @ w.T
        elif x.shape[0] < w.shape[0]:
            # fewer rows than outputs: (w @ x^T)^T. OpenBLAS runs x @ w^T with a transposed
            # w slower (a 32-row batch through 945 -> 945: 0.87 against 0.46 ms)
            y = np.ascontiguousarray(par.matmul(w, x.T).T)
        else:
            y = par.matmul(x, w.T)
        if b is not None:
            y += b
        return y

    def vjp(self, g):
        x, w = self.inputs[0], self.inputs[1]
        rows = math.prod(g.shape[:-1])  # (not -1: ambiguous for 0 features)
        if not is_grad_enabled():  # not recorded: NumPy directly (six ops less per layer)
            gd, need = g.data, self.needs_grad
            g2 = gd.reshape(rows, gd.shape[-1])
            gx = par.matmul(g2, w.data).reshape(x.shape) if need[0] else None
            gw = par.matmul(g2.T, x.data.reshape(rows, x.shape[-1])) if need[1] else None
            gb = leading_sum(g2) if len(need) == 3 and need[2] else None  # (a float32 sum
            # down many rows was 28-313x PyTorch's error)
            return _consts(gx, gw, gb)[: len(need)]
        gx = g @ w if self.needs_grad[0] else None
        g2 = g.reshape(rows, g.shape[-1])  # (rows, out)
        gw = g2.T @ x.reshape(rows, x.shape[-1]) if self.needs_grad[1] else None
        if len(self.inputs) == 2:
            return gx, gw
        gb = g2.sum(0) if self.needs_grad[2] else None
        return gx, gw, gb


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Affine map ``input @ weight.T + bias``; input (..., in), weight (out, in), bias (out,)."""
    tensor_input(input, "linear")
    tensor_input(weight, "linear", "weight")
    if bias is not None:
        tensor_input(bias, "linear", "bias")
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {tuple(input.shape)} does not match weight of shape "
            f"{tuple(weight.shape)} (input's last dim must be {weight.shape[1]})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(
            f"linear: bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}"
        )
    if input.dtype != weight.dtype:
        raise ValueError(
            f"linear: input dtype {input.dtype} differs from weight dtype {weight.dtype}"
        )
    if bias is not None and bias.dtype != weight.dtype:
        raise ValueError(
            f"linear: bias dtype {bias.dtype} differs from weight dtype {weight.dtype}"
        )
    if bias is None:
        return Linear.apply(input, weight)
    return Linear.apply(input, weight, bias)
