"""Property tests (hypothesis): gradients of broadcasting binary ops, reductions and indexing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import tinygrad_np as tg
from tinygrad_np import Tensor

SETTINGS = settings(max_examples=25, deadline=None)

shape_pairs = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)


def _sum_to(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Reference: sum a broadcast array back to ``shape`` (NumPy only)."""
    while g.ndim > len(shape):
        g = g.sum(0)
    for i, n in enumerate(shape):
        if n == 1 and g.shape[i] != 1:
            g = g.sum(i, keepdims=True)
    return g


# (op, d out/d a, d out/d b) for positive inputs
BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: np.ones_like(a * b), lambda a, b: np.ones_like(a * b)),
    "sub": (
        lambda a, b: a - b,
        lambda a, b: np.ones_like(a * b),
        lambda a, b: -np.ones_like(a * b),
    ),
    "mul": (lambda a, b: a * b, lambda a, b: b + 0 * a, lambda a, b: a + 0 * b),
    "div": (lambda a, b: a / b, lambda a, b: 1 / b + 0 * a, lambda a, b: -a / b**2),
    "pow": (lambda a, b: a**b, lambda a, b: b * a ** (b - 1), lambda a, b: a**b * np.log(a)),
}


@SETTINGS
@given(shapes=shape_pairs, op=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2**16))
def test_binary_op_gradients_under_broadcasting(shapes, op, seed):
    (sa, sb), out_shape = shapes.input_shapes, shapes.result_shape
    rng = np.random.default_rng(seed)
    a0, b0 = rng.uniform(0.5, 2.0, sa), rng.uniform(0.5, 2.0, sb)
    f, da, db = BINARY[op]
    a, b = Tensor(a0, requires_grad=True), Tensor(b0, requires_grad=True)
    y = f(a, b)
    assert y.shape == out_shape
    np.testing.assert_allclose(y.numpy(), f(a0, b0), rtol=1e-12)
    u = rng.standard_normal(out_shape)
    y.backward(Tensor(u))
    assert a.grad.shape == sa and b.grad.shape == sb
    np.testing.assert_allclose(a.grad.numpy(), _sum_to(u * da(a0, b0), sa), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), _sum_to(u * db(a0, b0), sb), rtol=1e-10, atol=1e-12)


@SETTINGS
@given(shapes=shape_pairs, seed=st.integers(0, 2**16))
def test_where_gradients_under_broadcasting(shapes, seed):
    (sa, sb), out_shape = shapes.input_shapes, shapes.result_shape
    rng = np.random.default_rng(seed)
    c = rng.random(out_shape) > 0.5
    a = Tensor(rng.standard_normal(sa), requires_grad=True)
    b = Tensor(rng.standard_normal(sb), requires_grad=True)
    u = rng.standard_normal(out_shape)
    tg.where(c, a, b).backward(Tensor(u))
    np.testing.assert_allclose(a.grad.numpy(), _sum_to(np.where(c, u, 0.0), sa))
    np.testing.assert_allclose(b.grad.numpy(), _sum_to(np.where(c, 0.0, u), sb))


@SETTINGS
@given(shapes=shape_pairs, op=st.sampled_from(["mul", "div", "pow"]))
def test_binary_broadcast_gradcheck(shapes, op):
    (sa, sb) = shapes.input_shapes
    rng = np.random.default_rng(0)
    a = Tensor(rng.uniform(0.5, 2.0, sa), requires_grad=True)
    b = Tensor(rng.uniform(0.5, 2.0, sb), requires_grad=True)
    assert tg.gradcheck(BINARY[op][0], (a, b), fast_mode=True)


@SETTINGS
@given(
    batch=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3),
    n=st.integers(1, 3),
    k=st.integers(1, 3),
    m=st.integers(1, 3),
)
def test_batched_matmul_gradients_vs_numpy(batch, n, k, m):
    (ba, bb) = batch.input_shapes
    rng = np.random.default_rng(1)
    a0, b0 = rng.standard_normal(ba + (n, k)), rng.standard_normal(bb + (k, m))
    a, b = Tensor(a0, requires_grad=True), Tensor(b0, requires_grad=True)
    y = a @ b
    u = rng.standard_normal(y.shape)
    y.backward(Tensor(u))
    np.testing.assert_allclose(y.numpy(), a0 @ b0, rtol=1e-12)
    ga = _sum_to(u @ np.swapaxes(b0, -1, -2), a0.shape)
    gb = _sum_to(np.swapaxes(a0, -1, -2) @ u, b0.shape)
    np.testing.assert_allclose(a.grad.numpy(), ga, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), gb, rtol=1e-10, atol=1e-12)


@SETTINGS
@given(
    shape=st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple),
    data=st.data(),
    keepdim=st.booleans(),
)
def test_sum_and_mean_gradients_over_any_dims(shape, data, keepdim):
    dims = data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1).map(tuple))
    x = Tensor(np.random.default_rng(2).standard_normal(shape), requires_grad=True)
    s = x.sum(dims, keepdim=keepdim)
    m = x.mean(dims, keepdim=keepdim)
    np.testing.assert_allclose(s.numpy(), x.numpy().sum(dims, keepdims=keepdim))
    (s.sum() + m.sum()).backward()
    count = int(np.prod([shape[d] for d in dims]))
    np.testing.assert_allclose(x.grad.numpy(), np.full(shape, 1.0 + 1.0 / count))


@SETTINGS
@given(idx=st.lists(st.integers(-5, 4), min_size=1, max_size=8))
def test_index_gradient_counts_repeats(idx):
    x = Tensor(np.arange(5.0), requires_grad=True)
    x[idx].sum().backward()
    want = np.bincount(np.asarray(idx) % 5, minlength=5).astype(float)
    np.testing.assert_array_equal(x.grad.numpy(), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_properties_hold_in_both_float_dtypes(dtype):
    a = Tensor(np.ones((2, 1), dtype), requires_grad=True)
    b = Tensor(np.ones(3, dtype), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == dtype and a.grad.tolist() == [[3.0], [3.0]]
