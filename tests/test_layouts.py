"""Every op-table row gives the same values and gradients for inputs laid out in memory
any way NumPy allows: C order, Fortran order, strided views, reversed views."""

from __future__ import annotations

import numpy as np
import pytest
from _rows import cases, grad_mask
from op_table import ROWS, make_inputs

import tinygrad_np as tg

LAYOUTS = ("fortran", "strided", "reversed", "transposed")


def _leaf_and_view(a: np.ndarray, layout: str, requires_grad: bool):
    """(leaf, x): x holds the values of ``a`` as a view in another memory layout, made by
    an op on the leaf (Tensor() itself would copy into a compact array); x's gradient
    is read back through the leaf's."""
    if layout == "c":
        leaf = tg.Tensor(a, requires_grad=requires_grad)
        return leaf, leaf, lambda g: g
    if layout == "fortran" or a.ndim == 0:  # (asfortranarray makes a 0-d array 1-d)
        leaf = tg.Tensor(np.asfortranarray(a) if a.ndim else a, requires_grad=requires_grad)
        return leaf, leaf, lambda g: g
    if layout == "strided":  # every other element of a larger buffer
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        big[..., ::2] = a
        leaf = tg.Tensor(big, requires_grad=requires_grad)
        return leaf, leaf[..., ::2], lambda g: g[..., ::2]
    if layout == "reversed":  # negative strides
        leaf = tg.Tensor(np.ascontiguousarray(a[::-1]), requires_grad=requires_grad)
        return leaf, leaf[::-1], lambda g: g[::-1]
    leaf = tg.Tensor(np.ascontiguousarray(a.T), requires_grad=requires_grad)
    return leaf, leaf.permute(*reversed(range(a.ndim))), lambda g: g.T


def _run(row, arrays, mask, layout=None, u=None):
    made = [
        _leaf_and_view(a, layout, m) if layout else (None, tg.Tensor(a, requires_grad=m), None)
        for a, m in zip(arrays, mask, strict=True)
    ]
    xs = [x for _, x, _ in made]
    if layout:
        for x, a in zip(xs, arrays, strict=True):
            np.testing.assert_array_equal(x.numpy(), a)
    out = row.fn(*xs, **row.kwargs)
    if u is None:
        u = np.random.default_rng(3).standard_normal(out.shape).astype(out.dtype)
    out.backward(tg.Tensor(u))
    grads = []
    for (leaf, x, back), m in zip(made, mask, strict=True):
        if not m:
            grads.append(None)
        elif leaf is None:
            grads.append(x.grad.numpy())
        else:
            grads.append(back(leaf.grad.numpy()))
    return out.numpy(), grads, u


@pytest.mark.parametrize(("row", "shapes"), cases([r for r in ROWS if r.name != "dropout"]))
def test_values_and_gradients_do_not_depend_on_the_inputs_layout(row, shapes):
    arrays = make_inputs(row, shapes, seed=7)
    mask = grad_mask(row, len(arrays))
    want, want_grads, u = _run(row, arrays, mask)
    for layout in LAYOUTS:
        got, grads, _ = _run(row, arrays, mask, layout, u)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=layout)
        for i, (g, w) in enumerate(zip(grads, want_grads, strict=True)):
            if w is not None:
                msg = f"{layout}: gradient of inputs[{i}]"
                np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12, err_msg=msg)


# The large routes (per-sample im2col on threads, the wide grids, the depthwise
# channel-major grids, the FFT, the row windows) each copy or view their input their own
# way: each takes x and g as strided, reversed and transposed views too.
ROUTES = [
    dict(x=(4, 8, 20, 20), w=(16, 8, 3, 3), padding=1),
    dict(x=(2, 6, 24, 24), w=(6, 1, 3, 3), padding=1, groups=6),  # band matrices
    dict(x=(2, 4, 64, 64), w=(4, 1, 3, 3), padding=1, groups=4),  # channel-major grids
    dict(x=(2, 4, 40, 40), w=(4, 4, 11, 11), padding=5),
    dict(x=(3, 5, 17, 15), w=(7, 5, 4, 2), stride=(2, 3)),
    dict(x=(2, 3, 28, 28), w=(6, 3, 5, 5)),
    dict(x=(2, 2, 9, 10, 11), w=(4, 2, 3, 3, 3), padding=1),
]


@pytest.mark.parametrize("conv", ROUTES, ids=lambda c: "x".join(map(str, c["w"])))
@pytest.mark.parametrize("threads_n", [1, 2])
def test_conv_routes_take_inputs_and_gradients_in_any_layout(conv, threads_n, threads):
    threads(threads_n)
    conv = dict(conv)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(conv.pop("x")), rng.standard_normal(conv.pop("w"))
    fn = getattr(tg.nn.functional, f"conv{x.ndim - 2}d")

    def run(layout):
        (lx, tx, bx), (lw, tw, bw) = (_leaf_and_view(a, layout, True) for a in (x, w))
        y = fn(tx, tw, **conv)
        g = rng_g.standard_normal(y.shape)
        gl, gt, _ = _leaf_and_view(g, layout, False)
        y.backward(gt)
        return y.numpy(), bx(lx.grad.numpy()), bw(lw.grad.numpy())

    rng_g = np.random.default_rng(1)
    want = run("c")
    for layout in LAYOUTS:
        rng_g = np.random.default_rng(1)
        for got, ref in zip(run(layout), want, strict=True):
            np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10, err_msg=layout)
